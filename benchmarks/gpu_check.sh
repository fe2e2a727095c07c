#!/usr/bin/env bash
# Trainer on a lent GPU machine (a machine lent for one short call; see the commands below):
# both backends (trl = transformers+PEFT, unsloth) on SmolLM2-135M and on a ~0.5B Llama built from
# a config, with TRL's SFTTrainer/DPOTrainer as the yardstick; tokens/s and peak VRAM per case.
#
#   benchmarks/gpu_check.sh prepare   # HERE (network): wheels -> .whl/, SmolLM2 config+tokenizer -> .gpu/
#   benchmarks/gpu_check.sh run       # THERE, in one device call (< 10 min), e.g.
#       run(command="bash benchmarks/gpu_check.sh run", carry=[".whl", ".gpu"], timeout_s=580)
#   benchmarks/gpu_check.sh fanout    # THERE, only the generator fan-out benchmark (~1 min)
#   benchmarks/gpu_check.sh memory    # THERE, only issue 25's memory checks (~4.5 min)
#   benchmarks/gpu_check.sh chunks    # THERE, issue 25's step time against the head's chunk (~3 min)
#
# `run` starts with the generator fan-out benchmark (issue #3's figure (a), CPU-bound at 64 calls
# in flight): on 16 cores, with the generator's default 4 call processes and with none, it shows
# whether spreading the SDK calls over processes reaches the 0.90 target the 2-core box cannot.
# The device image has torch (CUDA), transformers 5.17, peft, accelerate, safetensors, tokenizers,
# sentencepiece, grpcio and protobuf; everything else the trainer imports travels as wheels. The
# SmolLM2 weights (538 MB) exceed what a call carries (64 MiB), so SmolLM2-135M runs with random
# weights from its real config.json and tokenizer: step time and memory depend on the
# architecture and the token counts, not on the weight values. Each figure lands in $OUT/*.txt and
# as RESULT lines in the output.
set -uo pipefail
cd "$(dirname "$0")/.."

# Wheels the device lacks (pins match pyproject.toml's trainer/gpu extras where it pins them).
WHEELS=(
  "pydantic==2.12.5" "pydantic-core==2.41.5" "pydantic-settings==2.12.0" "typing-inspection==0.4.2"
  "annotated-types==0.7.0" "python-dotenv==1.2.1"
  "minio==7.2.20" "argon2-cffi==25.1.0" "argon2-cffi-bindings==25.1.0" "pycryptodome==3.23.0"
  "grpcio-health-checking==1.85.1" "grpcio-reflection==1.85.1"
  "trl==1.15.0" "datasets==4.8.5" "dill==0.4.0" "multiprocess==0.70.18"
  "unsloth==2026.10.9" "unsloth-zoo" "bitsandbytes" "tyro" "docstring-parser" "shtab"
  "typeguard" "cut-cross-entropy" "msgspec" "hf-transfer" "torchao" "bitsandbytes==0.50.2"
  # The generator fan-out benchmark: the teacher SDK, and the gRPC/protobuf versions the
  # generated code in distill/v1 asks for (the image's may be older).
  "openai==3.57.0" "httpx2==2.16.2" "httpcore2==2.16.2" "truststore==0.10.5" "jiter==0.19.0"
  "sniffio==1.3.1" "grpcio==1.85.1" "protobuf==7.36.2"
  # minio's argon2 bindings load cffi's backend, which the image lacks.
  "cffi==2.1.1" "pycparser==3.12"
)

prepare() {
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  rm -rf .whl .gpu  # one version of each wheel: two stop the install there
  mkdir -p .whl .gpu/smollm2
  local py=${PYTHON:-.venv/bin/python}
  for w in "${WHEELS[@]}"; do
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
      -d .whl "$w" || echo "WARNING: no wheel for $w" >&2
  done
  "$py" benchmarks/slim_wheels.py .whl  # unsloth's web UI, other CUDA versions' libraries
  # SmolLM2's config and tokenizer (small); its weights stay behind.
  local smol
  smol=$("$py" -m services.common.models prepare-smollm2)
  cp "$smol"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json} .gpu/smollm2/
  cp "$smol"/chat_template.jinja .gpu/smollm2/ 2>/dev/null || true
  du -sh .whl .gpu
  echo "carry: .whl .gpu (must stay under 64 MiB together with the working tree)"
}

use_wheels() {
  out=${OUT:-/tmp/gpu_check}
  mkdir -p "$out"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
  export DISTILL_CACHE_DIR=/tmp/distill-cache HF_HUB_OFFLINE=1
}

fanout() {
  nproc | sed 's/^/cores: /'
  timeout 240 python3 -m benchmarks.generator_fanout 2>&1 | tee "$out/fanout.txt" \
    | grep -E "^RESULT|ratio|Error"
}

run() {
  fanout
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
  python3 -c "import torch, transformers, peft, trl; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)"
  python3 -c "import unsloth; print('unsloth', unsloth.__version__)" 2>&1 | tail -1
  # Backend selection as the service does it (auto -> unsloth when CUDA and it imports).
  python3 -c "from services.trainer.backends import resolve_backend_name as r; \
print('auto backend ->', r('auto'))" 2>&1 | tail -1

  local cases="ours-sft,trl-sft,ours-bond,trl-dpo,unsloth-sft,unsloth-bond"
  # SmolLM2-135M (random weights, real config); then the ~0.5B Llama (~3.5 min each at most),
  # then the vocabulary-heavy Llama (~2.5 min at most).
  timeout 210 python3 benchmarks/trainer_step.py --model smollm2-random --tokenizer .gpu/smollm2 \
    --batch-size 8 --seq-len 512 --steps 10 --warmup 3 --cases "$cases" \
    --name trainer_step_gpu_smollm2 2>&1 | tee "$out/smollm2.txt" | grep -E "^RESULT|s/step|Error"
  timeout 210 python3 benchmarks/trainer_step.py --model llama-0.5b --tokenizer .gpu/smollm2 \
    --batch-size 8 --seq-len 512 --steps 10 --warmup 3 --cases "$cases" \
    --name trainer_step_gpu_llama05b 2>&1 | tee "$out/llama05b.txt" | grep -E "^RESULT|s/step|Error"
  memory
}

# Issue 25, figure (c) on the GPU, with (a) and (b) beside it: three configurations (SmolLM2-135M's
# architecture, batch 8 x 512 tokens; the vocabulary-heavy Llama, Llama-3.2-1B's 128,256 x 2048
# head with 2 blocks, batch 4 x 512; the ~0.5B Llama, batch 4 x 512), each with our BOND and SFT
# steps and TRL's DPOTrainer. Per case: torch.cuda.max_memory_allocated against the memory model's
# tensors, the device's peak (context + peak reservation) against its total, and the model's
# parts; BOND's peak and step time against DPO's. ~4.5 min on an H200.
memory() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
  local m
  for m in "smollm2-random 8 10" "llama-vocab 4 20" "llama-0.5b 4 10"; do
    set -- $m
    timeout 150 python3 benchmarks/trainer_step.py --model "$1" --tokenizer .gpu/smollm2 \
      --batch-size "$2" --seq-len 512 --steps "$3" --warmup 3 --cases ours-bond,ours-sft,trl-dpo \
      --name "trainer_memory_gpu_${1}_b$2" 2>&1 | tee "$out/memory_${1}_b$2.txt" \
      | grep -E "^RESULT|s/step|Error"
  done
}

# Issue 25, figure (b) on the GPU: BOND / DPO step time was 1.16-1.18 on the vocabulary-heavy
# Llama (0.98-1.04 elsewhere). Our LM head runs CHUNK_ELEMENTS (2^23) logits at a time, 64
# positions of a 128,256 vocabulary, where TRL's Triton kernel fuses the head. The same case with
# chunks 4x and 16x larger shows whether the chunk's size is the cost, and what memory a larger
# default would add (predicted and measured, in each RESULT line).
chunks() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
  local n
  for n in 8388608 33554432 134217728; do
    timeout 150 python3 benchmarks/trainer_step.py --model llama-vocab --tokenizer .gpu/smollm2 \
      --batch-size 4 --seq-len 512 --steps 20 --warmup 3 --cases ours-bond,trl-dpo \
      --chunk-elements "$n" --name "trainer_chunks_gpu_llama-vocab_c$n" 2>&1 \
      | tee "$out/chunks_$n.txt" | grep -E "^RESULT|s/step|Error"
  done
}

case "${1:-}" in
  prepare) prepare ;;
  run) use_wheels && run ;;
  fanout) use_wheels && fanout ;;
  memory) use_wheels && memory ;;
  chunks) use_wheels && chunks ;;
  *) echo "usage: $0 prepare|run|fanout|memory|chunks" >&2; exit 2 ;;
esac
