"""Will the student train in a node's memory? The trainer checks before it loads any weights,
the gateway before a job starts (against the trainer's reported memory).

The figure is services.common.training_memory's model of the step's peak (weights, LoRA state,
activations, the chunked loss, runtime), from the model's config.json and the job's settings.
When the batch does not fit, the largest batch size that divides it and fits is used, with
gradient accumulation making up the rest (same effective batch); when not even batch 1 fits, the
job is refused with what would make it fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from services.common.errors import FailedPrecondition
from services.common.specs.train import TrainSettings
from services.common.training_memory import (
    GB,
    ModelShape,
    PeakMemory,
    TrainingJob,
    how_to_fit,
    largest_batch,
    peak_memory,
)


@dataclass(frozen=True)
class MemoryEstimate:
    required_gb: float
    available_gb: float
    shape: ModelShape
    device_type: str
    peak: PeakMemory
    # The config to train with: the request's, or with a lower batch_size (lowered_from it).
    config: TrainSettings
    lowered_from: int | None = None

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


def training_job(config: TrainSettings, backend: str, device_type: str, *,
                 load_in_4bit: bool = False) -> TrainingJob:
    """The memory model's view of a job on this backend and device."""
    if backend == "unsloth" and load_in_4bit:
        precision = "4bit"
    else:
        precision = "bfloat16" if device_type == "cuda" else "float32"
    return TrainingJob(
        sequence_length=config.max_seq_length, batch_size=config.batch_size,
        lora_r=config.lora.r, beta=config.bond.beta, gamma=config.bond.gamma,
        precision=precision, device="cuda" if device_type == "cuda" else "cpu",
        gradient_checkpointing=True)  # both backends checkpoint (trl.py, unsloth.py)


def check(model_dir: Path, config: TrainSettings, backend: str, device_type: str,
          memory_gb: float | None = None, *, load_in_4bit: bool = False,
          student: str = "") -> MemoryEstimate:
    """The estimate for `config`, or for it with a lower batch size when that is what fits;
    FAILED_PRECONDITION when not even batch size 1 fits `memory_gb` (default: the node's).
    `student`: the model's name in the message (default: its folder's)."""
    shape = model_shape(model_dir)
    job = training_job(config, backend, device_type, load_in_4bit=load_in_4bit)
    available = round(memory_gb if memory_gb is not None else node_memory_gb(device_type), 2)
    peak = peak_memory(shape, job)
    if peak.total_gb <= available:
        return MemoryEstimate(peak.total_gb, available, shape, device_type, peak, config)
    where = "GPU memory" if device_type == "cuda" else "RAM"
    fits = largest_batch(shape, job, available)
    if fits == 0:
        one = peak_memory(shape, replace(job, batch_size=1))
        raise FailedPrecondition(
            f"not enough memory to train {student or model_dir.name!r} "
            f"({shape.parameters / 1e6:.0f}M parameters) with max_seq_length "
            f"{config.max_seq_length}: even batch_size 1 needs about {one.total_gb:.1f} GB of "
            f"{where} ({one.parts()}), this trainer has {available:.1f} GB. It would fit with "
            f"{how_to_fit(shape, job, available)}, or on a node with more memory"
        )
    batch = max(d for d in range(1, fits + 1) if config.batch_size % d == 0)
    lowered = replace(config, batch_size=batch, gradient_accumulation_steps=(
        config.gradient_accumulation_steps * (config.batch_size // batch)))
    peak = peak_memory(shape, replace(job, batch_size=batch))
    return MemoryEstimate(peak.total_gb, available, shape, device_type, peak, lowered,
                          lowered_from=config.batch_size)
