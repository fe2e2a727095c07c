#!/usr/bin/env bash
# Runs the test suite N times in a fresh clone while a CPU hog holds every core, and reports each
# run's outcome, time and failures. A test that passes idle and fails here is a defect.
#
#   scripts/stress_suite.sh [RUNS=3] [REF=HEAD]
#
# The hog is stress-ng (Debian's package) when it is installed or installable, else one busy
# Python process per core. Logs and the summary go to $STRESS_DIR (default: a temp folder).
set -euo pipefail
RUNS="${1:-3}"
REF="${2:-HEAD}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${STRESS_DIR:-$(mktemp -d -t distill-stress.XXXXXX)}"
CLONE="$OUT/clone"
CORES="$(nproc)"
mkdir -p "$OUT"

if ! command -v stress-ng >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng) \
    >"$OUT/stress-ng-install.log" 2>&1 || true
fi
if command -v stress-ng >/dev/null; then
  stress-ng --cpu "$CORES" --cpu-method matrixprod --quiet >"$OUT/hog.log" 2>&1 &
  HOG="stress-ng --cpu $CORES"
else
  python3 -c "
import multiprocessing as mp
def spin():
    while True:
        pass
for _ in range($CORES):
    mp.Process(target=spin, daemon=False).start()
" >"$OUT/hog.log" 2>&1 &
  HOG="$CORES busy Python processes"
fi
HOG_PID=$!
trap 'pkill -P "$HOG_PID" 2>/dev/null; kill "$HOG_PID" 2>/dev/null; true' EXIT

rm -rf "$CLONE"
git clone --quiet "$REPO" "$CLONE"
git -C "$CLONE" checkout --quiet "$(git -C "$REPO" rev-parse "$REF")"
echo "stress: $RUNS runs of 'make test' at $(git -C "$CLONE" rev-parse --short HEAD) under $HOG; logs in $OUT" \
  | tee "$OUT/summary.txt"

failed_runs=0
for run in $(seq 1 "$RUNS"); do
  log="$OUT/run-$run.log"
  start=$(date +%s)
  if (cd "$CLONE" && CI=true make test) >"$log" 2>&1; then outcome=passed; else
    outcome=FAILED; failed_runs=$((failed_runs + 1)); fi
  took=$(( $(date +%s) - start ))
  result="$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$log" | tail -1 || true)"
  echo "run $run: $outcome in ${took}s: ${result:-no pytest summary (see $log)}" | tee -a "$OUT/summary.txt"
  grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /' | tee -a "$OUT/summary.txt" || true
done
echo "stress: $((RUNS - failed_runs))/$RUNS runs passed" | tee -a "$OUT/summary.txt"
[ "$failed_runs" = 0 ]
