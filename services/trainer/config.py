"""A Train request checked and filled with defaults: the plain settings the training code uses.

Every problem is an InvalidArgument naming the field as it appears in the request
(`training.batch_size`, `bond.bond_beta`, ...), raised before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from distill.v1 import common_pb2, trainer_pb2
from services.common.errors import InvalidArgument

BackendName = Literal["auto", "trl", "unsloth"]
# job_id becomes a key segment (jobs/{job_id}/...): server-generated ids only, nothing path-like.
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
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


@dataclass(frozen=True)
class TrainConfig:
    job_id: str
    student_model: str
    curated_uri: str = ""
    curated_sha256: str = ""
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
    resume: bool = False

    def total_steps(self, n_examples: int) -> int:
        """Optimiser steps: max_steps, or epochs over `n_examples` prompts (1 epoch if unset)."""
        if self.max_steps is not None:
            return self.max_steps
        batches = math.ceil(n_examples / self.batch_size)
        epochs = self.epochs if self.epochs is not None else DEFAULT_EPOCHS
        return max(1, math.ceil(epochs * batches / self.gradient_accumulation_steps))

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

    @classmethod
    def from_request(cls, request: trainer_pb2.TrainRequest) -> TrainConfig:
        """Checks `request` and fills defaults; InvalidArgument naming the first bad field."""
        if not request.job_id:
            raise InvalidArgument("job_id: required")
        if not _JOB_ID.match(request.job_id):
            raise InvalidArgument(
                f"job_id: {request.job_id[:80]!r} must be 1-128 letters, digits, '.', '_' or '-' "
                "starting with a letter or digit"
            )
        if not request.HasField("curated") or not request.curated.uri:
            raise InvalidArgument("curated.uri: required (the curated dataset's artifact ref)")
        if not request.student_model.strip():
            raise InvalidArgument("student_model: required (registry shortcut or model folder)")

        lora = request.lora
        r = _int(lora, "r", "lora.r", DEFAULT_LORA_R, low=1, high=1024)
        alpha = _int(lora, "alpha", "lora.alpha", DEFAULT_LORA_ALPHA, low=1, high=1 << 16)
        dropout = _float(lora, "dropout", "lora.dropout", DEFAULT_LORA_DROPOUT, low=0.0, high=1.0,
                         high_open=True)
        for i, module in enumerate(lora.target_modules):
            if not _MODULE.match(module):
                raise InvalidArgument(
                    f"lora.target_modules[{i}]: {module[:80]!r} is not a module name"
                )

        bond = request.bond
        beta = _float(bond, "bond_beta", "bond.bond_beta", DEFAULT_BETA, low=0.0, high=1.0)
        gamma = _float(bond, "bond_gamma", "bond.bond_gamma", DEFAULT_GAMMA, low=0.0, high=100.0)
        tau = _float(bond, "preference_temperature", "bond.preference_temperature", DEFAULT_TAU,
                     low=0.0, high=1000.0, low_open=True)

        t = request.training
        if t.HasField("max_steps") and t.HasField("epochs"):
            raise InvalidArgument(
                "training.max_steps / training.epochs: set one of them, not both"
            )
        max_steps = _int(t, "max_steps", "training.max_steps", None, low=1, high=10_000_000)
        epochs = _float(t, "epochs", "training.epochs", None, low=0.0, high=10_000.0,
                        low_open=True)
        backend = _BACKENDS.get(t.backend)
        if t.backend not in _BACKENDS:
            raise InvalidArgument(f"training.backend: unknown value {t.backend}")
        return cls(
            job_id=request.job_id,
            student_model=request.student_model.strip(),
            curated_uri=request.curated.uri,
            curated_sha256=request.curated.sha256,
            lora=LoraConfig(r, alpha, dropout, tuple(lora.target_modules)),
            bond=BondConfig(beta, gamma, tau),
            max_steps=max_steps,
            epochs=epochs,
            learning_rate=_float(t, "learning_rate", "training.learning_rate",
                                 DEFAULT_LEARNING_RATE, low=0.0, high=1.0, low_open=True),
            batch_size=_int(t, "batch_size", "training.batch_size", DEFAULT_BATCH_SIZE,
                            low=1, high=4096),
            gradient_accumulation_steps=_int(t, "gradient_accumulation_steps",
                                             "training.gradient_accumulation_steps", 1,
                                             low=1, high=4096),
            max_seq_length=_int(t, "max_seq_length", "training.max_seq_length",
                                DEFAULT_MAX_SEQ_LENGTH, low=8, high=1 << 20),
            seed=_int(t, "seed", "training.seed", DEFAULT_SEED, low=0, high=2**63 - 1),
            checkpoint_interval=_int(t, "checkpoint_interval", "training.checkpoint_interval",
                                     DEFAULT_CHECKPOINT_INTERVAL, low=1, high=10_000_000),
            backend=backend,
            warmup_ratio=_float(t, "warmup_ratio", "training.warmup_ratio", DEFAULT_WARMUP_RATIO,
                                low=0.0, high=1.0, high_open=True),
            resume=request.resume,
        )


def _int(msg, name: str, path: str, default, *, low: int, high: int):
    if not msg.HasField(name):
        return default
    value = getattr(msg, name)
    if not low <= value <= high:
        raise InvalidArgument(f"{path}: must be in [{low}, {high}], got {value}")
    return value


def _float(msg, name: str, path: str, default, *, low: float, high: float,
           low_open: bool = False, high_open: bool = False):
    if not msg.HasField(name):
        return default
    value = getattr(msg, name)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high
    )
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise InvalidArgument(f"{path}: must be in {interval}, got {value}")
    return value
