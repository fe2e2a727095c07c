"""Training backends: how the student is loaded and wrapped with LoRA. The loop and the BOND
loss (services.trainer.loop) are the same for all of them.

- "trl":     Hugging Face transformers + PEFT, CPU or CUDA (float32 on CPU, bf16 on CUDA).
- "unsloth": Unsloth's FastLanguageModel (fused kernels, optional 4-bit base), CUDA only.

"auto" picks Unsloth when CUDA is present and `import unsloth` works, else TRL.
"""

from __future__ import annotations

import abc
import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.specs.train import LoraConfig

log = logging.getLogger(__name__)

# "All linear projections" of Llama/Qwen/Mistral-style blocks, for backends that need names.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                          "down_proj")


@dataclass
class LoadedModel:
    model: Any  # a peft.PeftModel: adapter enabled for the policy, disable_adapter() for the ref
    tokenizer: Any
    device: Any  # torch.device


class Backend(abc.ABC):
    name: str = ""

    @abc.abstractmethod
    def load(self, model_dir: Path, lora: LoraConfig, *, max_seq_length: int,
             seed: int) -> LoadedModel:
        """The student from `model_dir` with a fresh LoRA adapter (initialised from the global
        torch RNG, so the caller's seed makes it reproducible), in training mode."""


@functools.cache
def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def unsloth_installed() -> bool:
    """Cheap check (no import) for status reports."""
    return importlib.util.find_spec("unsloth") is not None


@functools.cache
def unsloth_importable() -> str | None:
    """None when `import unsloth` works, else why not. Imported only on CUDA nodes: the import
    patches transformers process-wide."""
    if not cuda_available():
        return "no CUDA GPU on this node"
    if not unsloth_installed():
        return "the unsloth package is not installed (pip install 'distill[gpu]')"
    try:
        import unsloth  # noqa: F401
    except Exception as exc:
        log.warning("unsloth does not import", exc_info=exc)
        return f"`import unsloth` failed: {type(exc).__name__}: {exc}"
    return None


def available_backends() -> list[str]:
    """Backends this node can run, without importing Unsloth."""
    names = ["trl"]
    if unsloth_installed() and cuda_available():
        names.append("unsloth")
    return names


def resolve_backend_name(requested: str) -> str:
    """"trl" or "unsloth" for a requested "auto" / "trl" / "unsloth"; FAILED_PRECONDITION when
    Unsloth is asked for explicitly on a node that cannot run it."""
    if requested == "trl":
        return "trl"
    if requested == "unsloth":
        problem = unsloth_importable()
        if problem:
            raise FailedPrecondition(
                f"training.backend TRAINER_BACKEND_UNSLOTH needs a CUDA GPU with Unsloth "
                f"installed, but {problem}; use TRAINER_BACKEND_TRL or TRAINER_BACKEND_AUTO"
            )
        return "unsloth"
    if requested == "auto":
        return "unsloth" if unsloth_importable() is None else "trl"
    raise InvalidArgument(f"training.backend: unknown backend {requested!r}")


def make_backend(name: str, *, unsloth_load_in_4bit: bool = True) -> Backend:
    if name == "trl":
        from services.trainer.backends.trl import TrlBackend

        return TrlBackend()
    if name == "unsloth":
        from services.trainer.backends.unsloth import UnslothBackend

        return UnslothBackend(load_in_4bit=unsloth_load_in_4bit)
    raise InvalidArgument(f"training.backend: unknown backend {name!r}")


def backend_device_type(name: str) -> str:
    return "cuda" if name == "unsloth" or cuda_available() else "cpu"
