"""The router's own CPU per teacher-alias request, one request at a time (issue 21, item (c)).

    .venv/bin/python -m benchmarks.router_cpu --requests 400 --rounds 3
    .venv/bin/python -m benchmarks.router_cpu --profile /tmp/router.txt   # py-spy, if on PATH

(c) of benchmarks/router.py is a wall-clock figure (p50 the router adds over calling the fake
provider directly), and on a shared 2-core machine the other processes move it by several
milliseconds. The CPU time the router process spends per request (/proc utime + stime over a
round, divided by its requests) moves far less with load, so it is the figure to compare changes
by. Started here on loopback: an S3 server (`weed mini`), the gateway, one router
(tests/fixtures/router_stack.py, no student) and the fake provider in its own process (no
latency); a teacher alias on the fake provider. Each round calls the fake directly, then the
router with trace capture on, then the router with the request opting out of its trace
(`x-distill-trace: off`), `--requests` each, through the `openai` SDK; medians over the rounds.

`--profile FILE`: one more round of routed requests while `py-spy record` samples the router
(py-spy must be on PATH; it is not a dependency of the project), and FILE gets the functions that
were on the stack in the most samples (inclusive) and the ones that ran most themselves. py-spy
samples threads that are not idle, which includes a thread waiting for a core: on a loaded
machine a system call that wakes another process (a socket write) looks far costlier than its
CPU. For CPU by function, cProfile with `time.thread_time` as its timer inside the router is the
truer picture (benchmarks/RESULTS.md, router_cpu).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.cpu import user_system_seconds
from benchmarks.generator_fanout import start_fake
from benchmarks.result import emit
from benchmarks.router import Load, one_at_a_time, prompts
from distill.local_suite import stop_process


def measured(pid: int, run: Callable[[], Load]) -> tuple[Load, float, float]:
    """`run()`'s load and the user and system CPU ms `pid` spent per request meanwhile."""
    user, system = user_system_seconds(pid)
    load = run()
    user_after, system_after = user_system_seconds(pid)
    count = max(1, len(load.latencies))
    return load, (user_after - user) * 1000 / count, (system_after - system) * 1000 / count


def frame_counts(collapsed: str) -> tuple[int, collections.Counter, collections.Counter]:
    """py-spy's raw (collapsed) stacks, "frame;frame;... count" a line: the samples, how many
    had each frame ("function file:line") anywhere on the stack (once per sample), and how many
    each was running itself."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";")]
        total += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
        own[frames[-1]] += int(count)
    return total, inclusive, own


def _frame(raw: str) -> str:
    """"function (path/to/file.py:line)" -> "function file.py:line"."""
    name, _, where = raw.partition(" (")
    return f"{name} {where.rstrip(')').rsplit('/', 1)[-1]}" if where else name


def profile_round(router_pid: int, run, out: Path, rate: int) -> dict:
    """`run()` while py-spy samples `router_pid`; writes the top frames to `out`."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    raw = out.with_suffix(".collapsed")
    spy = subprocess.Popen([py_spy, "record", "--pid", str(router_pid), "--format", "raw",
                            "--rate", str(rate), "--output", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run()
    finally:
        spy.send_signal(2)  # py-spy writes its samples on SIGINT
        spy.wait(60)
    total, inclusive, own = frame_counts(raw.read_text())
    lines = [f"{total} samples at {rate}/s (idle threads excluded)", "", "inclusive:"]
    lines += [f"{100 * n / total:6.1f}%  {frame}" for frame, n in inclusive.most_common(80)]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:6.1f}%  {frame}" for frame, n in own.most_common(50)]
    out.write_text("\n".join(lines) + "\n")
    return {"profile_samples": total, "profile": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per arm, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="py-spy's top frames go here")
    parser.add_argument("--profile-rate", type=int, default=500, help="py-spy samples/s")
    args = parser.parse_args(argv)

    from tests.fixtures.router_stack import run_router_stack
    from tests.fixtures.s3_server import run_weed_mini

    texts = prompts(args.requests, "Teacher review")
    figures: dict = {"requests": args.requests, "rounds": args.rounds,
                     "load_average_1m_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-router-cpu-") as tmp, \
            contextlib.ExitStack() as stack:
        home = Path(tmp)
        s3 = stack.enter_context(run_weed_mini(home / "weed"))
        fake_proc, fake = start_fake(0.0)
        stack.callback(stop_process, fake_proc)
        routers = stack.enter_context(run_router_stack(home, s3, fake, "sk-bench", students={}))
        routers.set_teacher_alias("bench-teacher")
        router_pid = routers.router.proc.pid

        def routed(headers: dict | None = None) -> Load:
            return one_at_a_time(routers.http_url, "bench-teacher", texts, routers.token,
                                 headers)

        routed()  # first imports, the provider client, connections
        arms: dict[str, list[Load]] = {"direct": [], "routed": [], "opted_out": []}
        cpu: dict[str, list[tuple[float, float]]] = {"routed": [], "opted_out": []}
        for _ in range(args.rounds):
            arms["direct"].append(one_at_a_time(fake.openai_base_url, "gpt-4o-mini", texts,
                                                "sk-bench"))
            for arm, headers in (("routed", None), ("opted_out", {"x-distill-trace": "off"})):
                load, user, system = measured(router_pid, lambda h=headers: routed(h))
                arms[arm].append(load)
                cpu[arm].append((user, system))
        direct_p50 = statistics.median(load.p50_ms() for load in arms["direct"])
        figures["fake_direct_p50_ms"] = round(direct_p50, 2)
        for arm in ("routed", "opted_out"):
            p50 = statistics.median(load.p50_ms() for load in arms[arm])
            figures[f"{arm}_p50_ms"] = round(p50, 2)
            figures[f"{arm}_added_p50_ms"] = round(p50 - direct_p50, 2)
            totals = [user + system for user, system in cpu[arm]]
            figures[f"{arm}_router_cpu_ms_per_request"] = round(statistics.median(totals), 3)
            figures[f"{arm}_router_cpu_ms_rounds"] = [round(v, 3) for v in totals]
            figures[f"{arm}_router_user_system_ms"] = [
                round(statistics.median(part), 3) for part in zip(*cpu[arm], strict=True)]
            figures[f"{arm}_failed"] = sum(len(load.failures) for load in arms[arm])
        if args.profile:
            figures |= profile_round(router_pid, routed, args.profile, args.profile_rate)
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    emit("router_cpu", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
