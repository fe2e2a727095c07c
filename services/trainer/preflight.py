"""Will the student train in this node's memory? Checked before any weights are loaded.

The estimate counts the weights in the dtype the backend loads them in, LoRA weights with their
gradients and AdamW moments, logits (the largest activation for small models: sequences x
length x vocabulary, for the policy and, with BOND, the reference pass) and the hidden
activations kept for the backward pass, plus a fixed overhead. On CUDA it is never below the
seed's table for 4-bit LoRA training (`services.common.models.vram_required_gb`: 0.6-1B 8 GB,
3B 16 GB, 8B 24 GB). Coarse on purpose: it gates, it does not plan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import FailedPrecondition
from services.common.models import vram_required_gb
from services.trainer.config import TrainConfig

GB = 1e9
OVERHEAD_GB = 0.5
# Bytes per base weight as each backend loads it.
WEIGHT_BYTES = {("trl", "cpu"): 4.0, ("trl", "cuda"): 2.0, ("unsloth", "cuda"): 2.0}
UNSLOTH_4BIT_WEIGHT_BYTES = 0.55  # 4-bit blocks plus their scales; embeddings stay 16-bit


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    hidden: int
    layers: int
    intermediate: int
    vocab: int


@dataclass(frozen=True)
class MemoryEstimate:
    required_gb: float
    available_gb: float
    shape: ModelShape
    device_type: str

    @property
    def fits(self) -> bool:
        return self.required_gb <= self.available_gb


def model_shape(model_dir: Path) -> ModelShape:
    """Sizes from config.json; the parameter count from a meta-device model (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    parameters = sum(p.numel() for p in model.parameters())
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    return ModelShape(
        parameters=parameters,
        hidden=hidden,
        layers=int(getattr(text, "num_hidden_layers", 0) or 0),
        intermediate=int(getattr(text, "intermediate_size", 0) or 4 * hidden),
        vocab=int(getattr(text, "vocab_size", 0) or 0),
    )


def node_memory_gb(device_type: str) -> float:
    """VRAM of GPU 0 on CUDA, else physical RAM (cgroup limit if lower)."""
    if device_type == "cuda":
        import torch

        return torch.cuda.get_device_properties(0).total_memory / GB
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            ram = min(ram, int(limit))
    except OSError:
        pass
    return ram / GB


def estimate_gb(shape: ModelShape, config: TrainConfig, backend: str, device_type: str,
                *, load_in_4bit: bool = False) -> float:
    weight_bytes = WEIGHT_BYTES.get((backend, device_type), 4.0)
    if backend == "unsloth" and load_in_4bit:
        weight_bytes = UNSLOTH_4BIT_WEIGHT_BYTES
    weights = shape.parameters * weight_bytes
    # LoRA on the 7 projections of each block: r x (in + out) each; weights, grads, 2 moments.
    per_layer = 4 * 2 * shape.hidden + 3 * (shape.hidden + shape.intermediate)
    lora = 4 * 4 * config.lora.r * per_layer * shape.layers
    # Sequences per micro-batch: a chosen and (with BOND's preference term) a rejected per prompt.
    sequences = config.batch_size * (2 if config.bond.beta > 0 else 1)
    tokens = sequences * config.max_seq_length
    with_reference = config.bond.beta > 0 or config.bond.gamma > 0
    # Policy logits, their float32 log-softmax and its gradient; the reference's logits.
    logits = tokens * shape.vocab * 4 * (3 + (2 if with_reference else 0))
    activation_bytes = 2 if device_type == "cuda" else 4
    hidden = tokens * shape.layers * (10 * shape.hidden + 3 * shape.intermediate) * \
        activation_bytes
    total = (weights + lora + logits + hidden) / GB + OVERHEAD_GB
    if device_type == "cuda":
        total = max(total, float(vram_required_gb(shape.parameters)))
    return round(total, 2)


def check(model_dir: Path, config: TrainConfig, backend: str, device_type: str,
          memory_gb: float | None = None, *, load_in_4bit: bool = False) -> MemoryEstimate:
    """The estimate, or FAILED_PRECONDITION when it exceeds `memory_gb` (default: the node's)."""
    shape = model_shape(model_dir)
    required = estimate_gb(shape, config, backend, device_type, load_in_4bit=load_in_4bit)
    available = memory_gb if memory_gb is not None else node_memory_gb(device_type)
    estimate = MemoryEstimate(required, round(available, 2), shape, device_type)
    if not estimate.fits:
        where = "GPU memory" if device_type == "cuda" else "RAM"
        raise FailedPrecondition(
            f"not enough memory to train {config.student_model!r} "
            f"({shape.parameters / 1e6:.0f}M parameters) with batch_size {config.batch_size} and "
            f"max_seq_length {config.max_seq_length}: needs about {required:.1f} GB of {where}, "
            f"this trainer has {available:.1f} GB. Use a smaller student, batch_size or "
            "max_seq_length, or a node with more memory"
        )
    return estimate
