"""A Train request (or a DistillSpec's lora, bond and training) checked, with its defaults.

Every problem is an InvalidArgument naming the field as it appears in the request
(`training.batch_size`, `spec.bond.bond_beta`, ...), raised before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from distill.v1 import common_pb2, trainer_pb2
from services.common.errors import InvalidArgument
from services.common.specs import names
from services.common.specs.fields import (
    MAX_MODEL_BYTES,
    MAX_NAME_BYTES,
    join,
    list_field,
    text_field,
)
from services.common.specs.fields import float_field as _float
from services.common.specs.fields import int_field as _int

BackendName = Literal["auto", "trl", "unsloth"]
_MODULE = re.compile(r"^[A-Za-z0-9_.-]+$")

DEFAULT_LORA_R = 16
DEFAULT_LORA_ALPHA = 32
DEFAULT_LORA_DROPOUT = 0.05
DEFAULT_BETA = 0.5
DEFAULT_GAMMA = 0.1
DEFAULT_TAU = 0.1
DEFAULT_EPOCHS = 1.0
DEFAULT_LEARNING_RATE = 2e-4
DEFAULT_BATCH_SIZE = 4
DEFAULT_MAX_SEQ_LENGTH = 1024
DEFAULT_SEED = 0
DEFAULT_CHECKPOINT_INTERVAL = 50
DEFAULT_WARMUP_RATIO = 0.03

_BACKENDS: dict[int, BackendName | None] = {
    common_pb2.TRAINER_BACKEND_UNSPECIFIED: None,
    common_pb2.TRAINER_BACKEND_AUTO: "auto",
    common_pb2.TRAINER_BACKEND_TRL: "trl",
    common_pb2.TRAINER_BACKEND_UNSLOTH: "unsloth",
}


@dataclass(frozen=True)
class LoraConfig:
    r: int = DEFAULT_LORA_R
    alpha: int = DEFAULT_LORA_ALPHA
    dropout: float = DEFAULT_LORA_DROPOUT
    # Empty: every linear projection of the transformer blocks (not the LM head).
    target_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class BondConfig:
    beta: float = DEFAULT_BETA
    gamma: float = DEFAULT_GAMMA
    tau: float = DEFAULT_TAU


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How to train (LoRA, BOND, optimiser, data): a DistillSpec's settings, before any job."""

    lora: LoraConfig = field(default_factory=LoraConfig)
    bond: BondConfig = field(default_factory=BondConfig)
    max_steps: int | None = None
    epochs: float | None = None
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch_size: int = DEFAULT_BATCH_SIZE
    gradient_accumulation_steps: int = 1
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    seed: int = DEFAULT_SEED
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL
    # None: the service's default (settings.default_backend).
    backend: BackendName | None = None
    warmup_ratio: float = DEFAULT_WARMUP_RATIO

    def total_steps(self, n_examples: int) -> int:
        """Optimiser steps: max_steps, or epochs over `n_examples` prompts (1 epoch if unset)."""
        if self.max_steps is not None:
            return self.max_steps
        batches = math.ceil(n_examples / self.batch_size)
        epochs = self.epochs if self.epochs is not None else DEFAULT_EPOCHS
        return max(1, math.ceil(epochs * batches / self.gradient_accumulation_steps))


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainSettings):
    """One Train request: the settings, and which job, student and curated data they train."""

    job_id: str
    student_model: str
    curated_uri: str = ""
    curated_sha256: str = ""
    resume: bool = False

    def fingerprint(self) -> str:
        """What a checkpoint must share with a request that resumes from it."""
        keep = {
            "student_model": self.student_model,
            "curated_sha256": self.curated_sha256,
            "lora": asdict(self.lora),
            "batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "max_seq_length": self.max_seq_length,
            "seed": self.seed,
        }
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def train_config(request: trainer_pb2.TrainRequest) -> TrainConfig:
    """Checks a Train request and fills defaults; InvalidArgument naming the first bad field."""
    job_id = names.job_id(request.job_id)
    if not request.HasField("curated") or not request.curated.uri:
        raise InvalidArgument("curated.uri: required (the curated dataset's artifact ref)")
    settings = train_settings(request.lora, request.bond, request.training)
    return TrainConfig(
        job_id=job_id, student_model=student_model(request.student_model),
        curated_uri=request.curated.uri, curated_sha256=request.curated.sha256,
        resume=request.resume, **{f.name: getattr(settings, f.name) for f in fields(settings)})


def student_model(value: str, field: str = "student_model") -> str:
    if not value.strip():
        raise InvalidArgument(f"{field}: required (registry shortcut or model folder)")
    return text_field(value.strip(), field, MAX_MODEL_BYTES)


def train_settings(lora: common_pb2.LoraSettings, bond: common_pb2.BondSettings,
                   training: common_pb2.TrainingSettings, prefix: str = "") -> TrainSettings:
    """Checks the LoRA, BOND and training settings and fills defaults. `prefix` is where they
    sit in the request ("" in a TrainRequest, "spec" in a DistillSpec)."""
    lora_path, bond_path, t_path = (join(prefix, name) for name in ("lora", "bond", "training"))
    r = _int(lora, "r", f"{lora_path}.r", DEFAULT_LORA_R, low=1, high=1024)
    alpha = _int(lora, "alpha", f"{lora_path}.alpha", DEFAULT_LORA_ALPHA, low=1, high=1 << 16)
    dropout = _float(lora, "dropout", f"{lora_path}.dropout", DEFAULT_LORA_DROPOUT, low=0.0,
                     high=1.0, high_open=True)
    list_field(lora.target_modules, f"{lora_path}.target_modules")
    for i, module in enumerate(lora.target_modules):
        text_field(module, f"{lora_path}.target_modules[{i}]", MAX_NAME_BYTES)
        if not _MODULE.match(module):
            raise InvalidArgument(
                f"{lora_path}.target_modules[{i}]: {module[:80]!r} is not a module name")

    beta = _float(bond, "bond_beta", f"{bond_path}.bond_beta", DEFAULT_BETA, low=0.0, high=1.0)
    gamma = _float(bond, "bond_gamma", f"{bond_path}.bond_gamma", DEFAULT_GAMMA, low=0.0,
                   high=100.0)
    tau = _float(bond, "preference_temperature", f"{bond_path}.preference_temperature",
                 DEFAULT_TAU, low=0.0, high=1000.0, low_open=True)

    t = training
    if t.HasField("max_steps") and t.HasField("epochs"):
        raise InvalidArgument(
            f"{t_path}.max_steps / {t_path}.epochs: set one of them, not both")
    if t.backend not in _BACKENDS:
        raise InvalidArgument(f"{t_path}.backend: unknown value {t.backend}")
    return TrainSettings(
        lora=LoraConfig(r, alpha, dropout, tuple(lora.target_modules)),
        bond=BondConfig(beta, gamma, tau),
        max_steps=_int(t, "max_steps", f"{t_path}.max_steps", None, low=1, high=10_000_000),
        epochs=_float(t, "epochs", f"{t_path}.epochs", None, low=0.0, high=10_000.0,
                      low_open=True),
        learning_rate=_float(t, "learning_rate", f"{t_path}.learning_rate",
                             DEFAULT_LEARNING_RATE, low=0.0, high=1.0, low_open=True),
        batch_size=_int(t, "batch_size", f"{t_path}.batch_size", DEFAULT_BATCH_SIZE,
                        low=1, high=4096),
        gradient_accumulation_steps=_int(t, "gradient_accumulation_steps",
                                         f"{t_path}.gradient_accumulation_steps", 1,
                                         low=1, high=4096),
        max_seq_length=_int(t, "max_seq_length", f"{t_path}.max_seq_length",
                            DEFAULT_MAX_SEQ_LENGTH, low=8, high=1 << 20),
        seed=_int(t, "seed", f"{t_path}.seed", DEFAULT_SEED, low=0, high=2**63 - 1),
        checkpoint_interval=_int(t, "checkpoint_interval", f"{t_path}.checkpoint_interval",
                                 DEFAULT_CHECKPOINT_INTERVAL, low=1, high=10_000_000),
        backend=_BACKENDS[t.backend],
        warmup_ratio=_float(t, "warmup_ratio", f"{t_path}.warmup_ratio", DEFAULT_WARMUP_RATIO,
                            low=0.0, high=1.0, high_open=True),
    )
