"""Peak memory of one LoRA + BOND training step, from the student's shape and the job's settings.

Used by the gateway's estimate (`peak_vram_gb`) and by the trainer's preflight (refuse, or lower
the batch). Counted, in bytes:

    weights      parameters x bytes per weight (float32 4, bf16 2, 4-bit ~0.55 with its scales)
    lora         r x (in + out of the 7 projections of every block) x 16
                 (float32 weight, gradient and two AdamW moments)
    activations  sequences x length x layers x (18 hidden + 5 intermediate) x activation bytes:
                 what autograd keeps per token and block for the backward pass (norm inputs and
                 outputs, LoRA dropout copies, q/k/v and attention output, the MLP's four
                 intermediate-sized tensors); with gradient checkpointing only each block's input
                 is kept, plus one block's worth during its recomputation
    loss         chunked head (services.trainer.bond_loss): 5 buffers of CHUNK_ELEMENTS float32
                 logits and two [positions x hidden] gradients; with full logits, 6 float32
                 [positions x vocabulary] tensors (policy and reference log-softmaxes, their
                 exponentials and gradients)
    overhead     the runtime: on CPU the process's resident libraries (torch, transformers,
                 tokenizer), on CUDA the context and allocator slack

The first four are the tensors: on CUDA, what torch.cuda.max_memory_allocated counts (the context
and the caching allocator's unused blocks are outside it). The total, with the overhead, is what
the node must have.

Sequences are the batch's prompts times 2 when the preference term runs (a chosen and a
rejected answer each); positions (the tokens the loss sees) are counted as the whole sequences,
an upper bound. The reference pass runs under no_grad: it keeps nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

GB = 1e9
Precision = Literal["float32", "bfloat16", "4bit"]
Device = Literal["cpu", "cuda"]

WEIGHT_BYTES: dict[str, float] = {"float32": 4.0, "bfloat16": 2.0, "4bit": 0.55}
ACTIVATION_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "4bit": 2}
LORA_BYTES_PER_PARAM = 16
ACTIVATION_HIDDEN, ACTIVATION_INTERMEDIATE = 18, 5
# Logits one chunk of the trainer's chunked BOND loss holds (float32: 32 MB); at its peak a chunk
# keeps about CHUNK_BUFFERS such [positions x vocabulary] buffers.
CHUNK_ELEMENTS = 1 << 23
CHUNK_BUFFERS, FULL_LOGIT_BUFFERS = 5, 6
# CUDA: the context, the libraries' kernels and handles, and the caching allocator's unused
# blocks; measured 0.85-0.96 GB above max_memory_allocated on an H200 (torch 2.11, CUDA 13) for
# both losses on three students (benchmarks/RESULTS.md, issue 25).
OVERHEAD_GB: dict[str, float] = {"cpu": 0.45, "cuda": 1.0}

FORMULA = (
    "peak = weights (params x bytes/weight) + LoRA (r x projection sizes x 16 B) + activations "
    f"(sequences x length x layers x ({ACTIVATION_HIDDEN} x hidden + {ACTIVATION_INTERMEDIATE} "
    "x intermediate) x bytes; 1 x hidden per layer with gradient checkpointing) + loss (chunked "
    f"LM head: {CHUNK_BUFFERS} x {CHUNK_ELEMENTS:,} float32 logits) + runtime overhead"
)


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    hidden: int
    layers: int
    intermediate: int
    vocab: int


@dataclass(frozen=True)
class TrainingJob:
    """What of a training job decides its memory."""

    sequence_length: int
    batch_size: int  # prompts per micro-batch
    lora_r: int
    beta: float
    gamma: float
    precision: Precision
    device: Device
    gradient_checkpointing: bool = False
    chunked_loss: bool = True

    @property
    def sequences(self) -> int:
        return self.batch_size * (2 if self.beta > 0 else 1)


@dataclass(frozen=True)
class PeakMemory:
    weights: float
    lora: float
    activations: float
    loss: float
    overhead: float

    @property
    def _tensors(self) -> float:
        return self.weights + self.lora + self.activations + self.loss

    @property
    def tensors_gb(self) -> float:
        return round(self._tensors / GB, 2)

    @property
    def total_gb(self) -> float:
        return round((self._tensors + self.overhead) / GB, 2)

    def parts(self) -> str:
        return ", ".join(f"{name} {getattr(self, name) / GB:.2f}" for name in
                         ("weights", "lora", "activations", "loss", "overhead")) + " GB"


# Architectures of the registry's students (their config.json), for estimates made before the
# weights are on hand.
STUDENT_SHAPES: dict[str, ModelShape] = {
    "smollm2-135m": ModelShape(134_515_008, 576, 30, 1536, 49_152),
    "smollm2-360m": ModelShape(361_821_120, 960, 32, 2560, 49_152),
    "qwen3-0.6b": ModelShape(596_049_920, 1024, 28, 3072, 151_936),
    "qwen3-1.7b": ModelShape(1_720_574_976, 2048, 28, 6144, 151_936),
    "llama-3.2-1b": ModelShape(1_235_814_400, 2048, 16, 8192, 128_256),
    "llama-3.2-3b": ModelShape(3_212_749_824, 3072, 28, 8192, 128_256),
    "llama-3.1-8b": ModelShape(8_030_261_248, 4096, 32, 14_336, 128_256),
}


def peak_memory(shape: ModelShape, job: TrainingJob) -> PeakMemory:
    weights = shape.parameters * WEIGHT_BYTES[job.precision]
    per_layer = 4 * 2 * shape.hidden + 3 * (shape.hidden + shape.intermediate)
    lora = job.lora_r * per_layer * shape.layers * LORA_BYTES_PER_PARAM
    tokens = job.sequences * job.sequence_length
    block = ACTIVATION_HIDDEN * shape.hidden + ACTIVATION_INTERMEDIATE * shape.intermediate
    per_token = (shape.layers * shape.hidden + block) if job.gradient_checkpointing \
        else shape.layers * block
    activations = tokens * per_token * ACTIVATION_BYTES[job.precision]
    if job.chunked_loss:
        loss = (CHUNK_BUFFERS * min(CHUNK_ELEMENTS, tokens * shape.vocab)
                + 2 * tokens * shape.hidden) * 4
    else:
        loss = FULL_LOGIT_BUFFERS * tokens * shape.vocab * 4
    return PeakMemory(weights, lora, activations, loss, OVERHEAD_GB[job.device] * GB)


def largest_batch(shape: ModelShape, job: TrainingJob, available_gb: float) -> int:
    """The largest batch size up to `job.batch_size` that fits; 0 when not even 1 does."""
    for batch in range(job.batch_size, 0, -1):
        if peak_memory(shape, replace(job, batch_size=batch)).total_gb <= available_gb:
            return batch
    return 0


def how_to_fit(shape: ModelShape, job: TrainingJob, available_gb: float) -> str:
    """What would make a job that does not fit at batch 1 fit: the longest sequence that does,
    a 4-bit base, a smaller student."""
    one = replace(job, batch_size=1)
    ways = []
    length = job.sequence_length
    while length > 64 and peak_memory(shape, replace(one, sequence_length=length)).total_gb \
            > available_gb:
        length //= 2
    if length < job.sequence_length and peak_memory(
            shape, replace(one, sequence_length=length)).total_gb <= available_gb:
        ways.append(f"max_seq_length {length} or less")
    if job.device == "cuda" and job.precision != "4bit" and peak_memory(
            shape, replace(one, precision="4bit")).total_gb <= available_gb:
        ways.append("a 4-bit base (the unsloth backend)")
    ways.append("a smaller student")
    return ", ".join(ways)
