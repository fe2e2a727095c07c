"""Seconds per training step: our trainer against TRL's trainers on the same model and data.

    python benchmarks/trainer_step.py [--model smollm2|tiny|llama-0.5b|DIR] [--batch-size 2]
        [--seq-len 96] [--steps 4] [--warmup 1] [--cases ours-sft,trl-sft,ours-bond,trl-dpo]

Cases (each in its own process, so peak memory is its own):
  ours-sft    our loop, BOND with beta = gamma = 0 (plain SFT on the chosen responses)
  trl-sft     trl.SFTTrainer, prompt-completion data (loss on the completion only)
  ours-bond   our loop, BOND beta 0.5, gamma 0.1, tau 0.1 (policy + reference passes, KL)
  trl-dpo     trl.DPOTrainer, loss_type ["sigmoid", "sft"], beta (tau) 0.1, reference = the
              PEFT model with its adapter disabled; its LoRA dropout kept (TRL turns a model's
              dropout off by default, `disable_dropout`; here both sides train the same LoRA)
  trl-dpo-nodropout  the same with TRL's default, dropout off: less work per step than ours,
              reported beside the like-for-like figure
  ours-bond-nodropout  ours-bond with LoRA dropout 0: the like-for-like figure at TRL's default
  unsloth-sft, unsloth-bond   our loop on the Unsloth backend (CUDA only)

Models: smollm2 (the dequantised student), tiny (the test model), smollm2-random (SmolLM2's
config with random weights: same step cost, for machines the weights can't reach), llama-0.5b
(a ~0.5B Llama from a config, random weights), llama-vocab (Llama-3.2-1B's vocabulary, 128,256,
and hidden size, 2048, with 2 blocks and random weights: the vocabulary-heavy case; the SmolLM2
tokenizer feeds it, so its ids use the first 49,152 rows, but every logit is computed).

Same LoRA (r 16, alpha 32, dropout 0.05, all linear projections), AdamW, learning rate, batch of
prompts, sequence length and rows for every case; one chosen and one rejected response per
prompt. A step's time is the interval between consecutive step ends (data, forward, backward,
optimizer), the first `--warmup` steps excluded; the figure is the median. tokens/s counts the
non-padding tokens of the sequences a step trains on (chosen for SFT; chosen and rejected for
BOND/DPO) and is the same count for our case and TRL's. Peak memory: the process's peak RSS on
CPU, torch.cuda.max_memory_allocated on GPU; for our cases also the peak the memory model
(services.common.training_memory) predicts for the job, and predicted / measured: its total
against RSS on CPU, its tensors (the total less the runtime overhead) against
max_memory_allocated on GPU, and there also its total against the device's peak (CUDA context
plus the allocator's peak reservation). Ends with `RESULT {json}`.

`--chunk-elements N` runs our cases with N logits per chunk of the LM head instead of
CHUNK_ELEMENTS (services.common.training_memory), in the loss and in the memory model alike: the
experiment behind issue 25's step time on a GPU (`benchmarks/gpu_check.sh chunks`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `services` and `benchmarks` importable
    sys.path.insert(0, str(REPO))

from benchmarks.result import emit  # noqa: E402

LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
LEARNING_RATE = 1e-4
TARGETS = {"sft": 1.05, "bond": 1.15, "memory_bond": 1.10, "prediction": 0.20}
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


def rows(n: int, seq_len: int) -> list[dict]:
    """n curated rows whose conversations fit seq_len with the SmolLM2 template (~30 tokens of
    template and default system prompt): a prompt of ~seq_len/4 words, answers of ~seq_len/4."""
    words = max(2, (seq_len - 36) // 4)
    out = []
    for i in range(n):
        pick = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 * words)]
        prompt = "Repeat the words: " + " ".join(pick[:words])
        out.append({
            "prompt": {"id": f"line-{i + 1}", "messages": [{"role": "user", "content": prompt}]},
            "chosen": [{"text": " ".join(pick[words:2 * words]), "score": 10.0}],
            "rejected": [{"text": " ".join(pick[2 * words:]), "score": 0.0}],
        })
    return out


# ---------------------------------------------------------------------------------------------
# Models

def prepare_model(name: str, work: Path, tokenizer_dir: Path | None = None) -> Path:
    """A model folder: smollm2 (the dequantised student), tiny, smollm2-random (SmolLM2's
    architecture with random weights), llama-0.5b (random, from a config), or a folder."""
    from services.common.models import prepare_smollm2
    from tests.fixtures.tiny_llama import make_tiny_llama, shared_cache_dir

    if name == "smollm2":
        return prepare_smollm2(shared_cache_dir())
    source = tokenizer_dir or (None if name == "tiny" else prepare_smollm2(shared_cache_dir()))
    if name == "tiny":
        return make_tiny_llama(work / "tiny", tokenizer_dir=source)
    if name == "smollm2-random":
        from transformers import AutoConfig

        return save_random_llama(AutoConfig.from_pretrained(source), source, work / name)
    if name == "llama-0.5b":
        from transformers import AutoTokenizer, LlamaConfig

        vocab = len(AutoTokenizer.from_pretrained(source))
        config = LlamaConfig(vocab_size=vocab, hidden_size=1280, num_hidden_layers=24,
                             num_attention_heads=20, num_key_value_heads=4,
                             intermediate_size=3456, max_position_embeddings=4096,
                             tie_word_embeddings=True)
        return save_random_llama(config, source, work / name)
    if name == "llama-vocab":
        from transformers import LlamaConfig

        config = LlamaConfig(vocab_size=128_256, hidden_size=2048, num_hidden_layers=2,
                             num_attention_heads=32, num_key_value_heads=8,
                             intermediate_size=8192, max_position_embeddings=4096,
                             tie_word_embeddings=True)
        return save_random_llama(config, source, work / name)
    return Path(name)


def save_random_llama(config, tokenizer_dir: Path, dest: Path) -> Path:
    """Random weights for `config` (bf16 on CUDA hosts, float32 otherwise) with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    for role in ("bos", "eos", "pad"):
        setattr(config, f"{role}_token_id", getattr(tokenizer, f"{role}_token_id"))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    if torch.cuda.is_available():
        model = model.to(torch.bfloat16)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


# ---------------------------------------------------------------------------------------------
# One case, in this process

def peak_memory_gb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def step_tokens(model_dir: Path, data: list[dict], batch: int, seq_len: int, bond: bool) -> float:
    """Mean non-padding tokens per step (same rows, same template, for both implementations)."""
    from transformers import AutoTokenizer

    from services.trainer.data import read_curated, tokenize_rows

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = tokenize_rows(read_curated(json.dumps(r) for r in data), tokenizer, seq_len)
    per_row = [sum(len(s.input_ids) for s in e.chosen + (e.rejected if bond else ()))
               for e in examples]
    return statistics.mean(per_row) * batch


def intervals(ends: list[float], warmup: int) -> list[float]:
    """Durations of the steps after the warm-up, from consecutive step-end times (a step's
    start is the previous step's end, so the first step is never timed)."""
    first = max(warmup, 1)
    return [b - a for a, b in zip(ends[first - 1:], ends[first:], strict=False)]


def ours_config(model_dir: Path, args, bond: bool, backend: str, curated_uri: str = ""):
    from services.common.specs.train import BondConfig, LoraConfig, TrainConfig

    return TrainConfig(
        job_id="bench", student_model=str(model_dir), curated_uri=curated_uri,
        lora=LoraConfig(LORA["r"], LORA["alpha"],
                        0.0 if args.case.endswith("nodropout") else LORA["dropout"]),
        bond=BondConfig(0.5, 0.1, 0.1) if bond else BondConfig(0.0, 0.0, 0.1),
        max_steps=args.warmup + args.steps, learning_rate=LEARNING_RATE,
        batch_size=args.batch_size, max_seq_length=args.seq_len, checkpoint_interval=10**6,
        backend=backend, warmup_ratio=0.0,
    )


def predicted_peak(model_dir: Path, args, bond: bool, backend: str):
    """The memory model's peak (PeakMemory) for this case's job, as the trainer's preflight
    computes it."""
    from services.common.train_memory import model_shape, training_job
    from services.common.training_memory import peak_memory
    from services.trainer.settings import TrainerSettings

    device = "cuda" if backend == "unsloth" or cuda_available() else "cpu"
    job = training_job(ours_config(model_dir, args, bond, backend), backend, device,
                       load_in_4bit=TrainerSettings().unsloth_load_in_4bit)
    return peak_memory(model_shape(model_dir), job)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run_ours(model_dir: Path, data: list[dict], args, bond: bool, backend: str) -> list[float]:
    from services.common.storage import LocalStore
    from services.trainer.job import run_training
    from services.trainer.loop import Step
    from services.trainer.settings import TrainerSettings

    work = Path(tempfile.mkdtemp(prefix="bench-ours-"))
    store = LocalStore(work / "store")
    body = "\n".join(json.dumps(r) for r in data).encode()
    curated = store.put_bytes("datasets/bench.jsonl", body)
    config = ours_config(model_dir, args, bond, backend, curated.uri)
    ends: list[float] = []

    def on_event(event):
        if isinstance(event, Step):
            ends.append(time.perf_counter())

    settings = TrainerSettings(store_url=f"file:{work}/store", work_dir=work / "tmp")
    run_training(config, settings, store, on_event, threading.Event())
    return intervals(ends, args.warmup)


class TorchLogProb:
    """Plain-torch stand-in for TRL's Triton `ChunkedLogProbFunction` (CPU only).

    TRL 1.15's SFTTrainer and DPOTrainer always route the LM head through a Triton kernel
    (`trl.trainer.utils.add_fused_lm_head`), which needs a GPU and the triton package: on a CPU
    host they fail with "'NoneType' object has no attribute 'apply'". On CPU this benchmark swaps
    in the same computation in plain torch (logits of the response positions, log-softmax, gather;
    entropy and top-1 under no_grad for TRL's metrics), which is what TRL did before the kernel.
    On CUDA TRL runs unmodified.
    """

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale,
              outputs):
        import torch

        logits = hidden @ weight.t()
        if bias is not None:
            logits = logits + bias
        logits = logits.float() * logit_scale
        if softcap:
            logits = softcap * torch.tanh(logits / softcap)
        logits = logits / temperature
        log_z = torch.logsumexp(logits, dim=-1)
        logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
        entropy = log_sum_sq = mean_logits = is_top1 = None
        with torch.no_grad():
            if "entropy" in outputs:
                entropy = log_z - (torch.softmax(logits, -1) * logits).sum(-1)
            if "log_sum_sq_probs" in outputs:
                log_sum_sq = torch.logsumexp(2 * logits, -1) - 2 * log_z
            if "mean_logits" in outputs:
                mean_logits = logits.mean(-1)
            if "is_top1" in outputs:
                is_top1 = logits.argmax(-1) == targets
        return logprobs, entropy, log_sum_sq, mean_logits, is_top1


def run_trl(model_dir: Path, data: list[dict], args, dpo: bool, dropout: bool = True
            ) -> list[float]:
    import torch
    import trl.trainer.utils as trl_utils
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    cuda = torch.cuda.is_available()
    if not cuda and trl_utils._ChunkedLogProbFunction is None:
        trl_utils._ChunkedLogProbFunction = TorchLogProb
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules="all-linear", task_type="CAUSAL_LM")
    ends: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, *a, **k):
            ends.append(time.perf_counter())

    common = {
        "output_dir": tempfile.mkdtemp(prefix="bench-trl-"),
        "max_steps": args.warmup + args.steps,
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": LEARNING_RATE,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": not cuda,
        "bf16": cuda,
        "dataloader_num_workers": 0,
        "max_length": args.seq_len,
        "seed": 0,
        "disable_tqdm": True,
    }
    if dpo:
        from trl import DPOConfig, DPOTrainer

        dataset = Dataset.from_list([{
            "prompt": r["prompt"]["messages"],
            "chosen": [{"role": "assistant", "content": r["chosen"][0]["text"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"][0]["text"]}],
        } for r in data])
        config = DPOConfig(loss_type=["sigmoid", "sft"], beta=0.1,
                           disable_dropout=not dropout, **common)
        trainer = DPOTrainer(model=model, args=config, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=peft_config,
                             callbacks=[Timer()])
    else:
        from trl import SFTConfig, SFTTrainer

        dataset = Dataset.from_list([{
            "prompt": r["prompt"]["messages"],
            "completion": [{"role": "assistant", "content": r["chosen"][0]["text"]}],
        } for r in data])
        config = SFTConfig(packing=False, **common)
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=peft_config,
                             callbacks=[Timer()])
    trainer.train()
    return intervals(ends, args.warmup)


def use_chunk_elements(n: int) -> None:
    """Our loss reads the module constant at each call and the memory model at each prediction;
    this case's process is the only one it changes."""
    from services.common import training_memory
    from services.trainer import bond_loss

    bond_loss.CHUNK_ELEMENTS = training_memory.CHUNK_ELEMENTS = n


def run_case(args) -> dict:
    model_dir = Path(args.model_dir)
    if args.chunk_elements:
        use_chunk_elements(args.chunk_elements)
    data = rows(args.batch_size * (args.warmup + args.steps), args.seq_len)
    bond = "bond" in args.case or "dpo" in args.case
    predicted = None
    if args.case.startswith(("ours", "unsloth")):
        backend = "unsloth" if args.case.startswith("unsloth") else "trl"
        times = run_ours(model_dir, data, args, bond, backend)
        predicted = predicted_peak(model_dir, args, bond, backend)
    else:
        times = run_trl(model_dir, data, args, dpo=bond,
                        dropout=not args.case.endswith("nodropout"))
    seconds = statistics.median(times)
    tokens = step_tokens(model_dir, data, args.batch_size, args.seq_len, bond)
    measured = peak_memory_gb()
    figures = {"seconds_per_step": round(seconds, 4),
               "tokens_per_second": round(tokens / seconds, 1),
               "tokens_per_step": round(tokens, 1), "peak_memory_gb": round(measured, 3),
               "step_seconds": [round(t, 4) for t in times]}
    if predicted is not None:
        figures["predicted_peak_gb"] = predicted.total_gb
        figures["predicted_parts_gb"] = {  # so each term can be checked against the measurement
            name: round(getattr(predicted, name) / 1e9, 3)
            for name in ("weights", "lora", "activations", "loss", "overhead")}
    if cuda_available():
        # max_memory_allocated counts tensors only: the model's tensors part is its prediction.
        # The device's own peak (context + the allocator's peak reservation) is what the model's
        # total, with its overhead, must cover.
        import torch

        free, total = torch.cuda.mem_get_info()
        context = (total - free) - torch.cuda.memory_reserved()
        figures["device_peak_gb"] = round((context + torch.cuda.max_memory_reserved()) / 1e9, 3)
        if predicted is not None:
            figures["predicted_tensors_gb"] = predicted.tensors_gb
            figures["predicted_over_measured"] = round(predicted.tensors_gb / measured, 3)
            figures["predicted_total_over_device_peak"] = round(
                predicted.total_gb / figures["device_peak_gb"], 3)
    elif predicted is not None:  # RSS holds the libraries too: the total is the prediction
        figures["predicted_over_measured"] = round(predicted.total_gb / measured, 3)
    return figures


# ---------------------------------------------------------------------------------------------
# Driver

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2",
                        help="smollm2|tiny|smollm2-random|llama-0.5b|llama-vocab|a folder")
    parser.add_argument("--tokenizer", type=Path,
                        help="folder with the SmolLM2 tokenizer (and config, for smollm2-random)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=96)
    parser.add_argument("--steps", type=int, default=4, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--cases", default="ours-sft,trl-sft,ours-bond,trl-dpo")
    parser.add_argument("--name", default="trainer_step")
    parser.add_argument("--chunk-elements", type=int, default=0,
                        help="logits per chunk of our LM head (default: CHUNK_ELEMENTS)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        print("CASE " + json.dumps(run_case(args)), flush=True)
        return

    with tempfile.TemporaryDirectory(prefix="bench-models-") as work:
        model_dir = prepare_model(args.model, Path(work), args.tokenizer)
        figures: dict = {"model": args.model, "batch_size": args.batch_size,
                         "seq_len": args.seq_len, "timed_steps": args.steps,
                         "warmup_steps": args.warmup, "lora": LORA,
                         "chunk_elements": args.chunk_elements or None}
        for case in args.cases.split(","):
            cmd = [sys.executable, __file__, "--case", case, "--model-dir", str(model_dir),
                   "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
                   "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--chunk-elements", str(args.chunk_elements)]
            started = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            line = next((x for x in proc.stdout.splitlines() if x.startswith("CASE ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stderr[-4000:], file=sys.stderr)
                figures[case] = {"error": f"exit {proc.returncode}"}
                continue
            figures[case] = json.loads(line[5:])
            print(f"{case}: {figures[case]['seconds_per_step']:.3f} s/step "
                  f"({time.perf_counter() - started:.0f} s with load)", file=sys.stderr)

    def ratio(ours: str, theirs: str, key: str = "seconds_per_step") -> float | None:
        a, b = figures.get(ours, {}), figures.get(theirs, {})
        if key in a and key in b:
            return round(a[key] / b[key], 3)
        return None

    figures["ratio_sft"] = ratio("ours-sft", "trl-sft")
    figures["ratio_bond_vs_dpo"] = ratio("ours-bond", "trl-dpo")
    figures["ratio_bond_vs_dpo_nodropout"] = ratio("ours-bond-nodropout", "trl-dpo-nodropout")
    figures["ratio_memory_bond_vs_dpo"] = ratio("ours-bond", "trl-dpo", "peak_memory_gb")
    figures["targets"] = {"ratio_sft": TARGETS["sft"], "ratio_bond_vs_dpo": TARGETS["bond"],
                          "ratio_memory_bond_vs_dpo": TARGETS["memory_bond"],
                          "predicted_over_measured": [1 - TARGETS["prediction"],
                                                      1 + TARGETS["prediction"]]}
    emit(args.name, figures)


if __name__ == "__main__":
    main()
