"""Settings of the trainer service (env prefix DISTILL_TRAINER_, then DISTILL_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from services.common.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    service_name: ClassVar[str] = "trainer"
    default_port: ClassVar[int] = 50054
    stage: ClassVar[bool] = True

    # Trainings this replica runs at once; a Train call beyond it gets RESOURCE_EXHAUSTED.
    capacity: int = Field(default=1, ge=1)
    # Memory the preflight checks against, in GB; unset means what the node has (VRAM of GPU 0 on
    # a CUDA node, RAM otherwise). Set it to reserve room for other processes on the node.
    memory_gb: float | None = Field(default=None, gt=0)
    # Backend when a request leaves it unspecified ("auto": Unsloth on CUDA when it imports).
    default_backend: Literal["auto", "trl", "unsloth"] = "auto"
    # Unsloth loads the student in 4-bit (bitsandbytes) when true, in bf16 otherwise.
    unsloth_load_in_4bit: bool = True
    # Local scratch for datasets, checkpoints and adapters before they go to the artifact store;
    # unset means a temporary folder per training.
    work_dir: Path | None = None
    # Complete checkpoints kept per job (older ones are deleted once a newer one is complete).
    keep_checkpoints: int = Field(default=3, ge=1)
