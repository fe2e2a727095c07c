"""Settings of the generator service (env prefix DISTILL_GENERATOR_, then DISTILL_)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from services.common.settings import ModelCallSettings
from services.common.specs import generate


class GeneratorSettings(ModelCallSettings):
    service_name: ClassVar[str] = "generator"
    default_port: ClassVar[int] = 50052
    stage: ClassVar[bool] = True

    # Teacher calls in flight at once when a request leaves RateLimits.max_concurrency unset,
    # and the most a request may ask for.
    default_max_concurrency: int = Field(default=generate.DEFAULT_MAX_CONCURRENCY, ge=1)
    max_concurrency_limit: int = Field(default=generate.MAX_CONCURRENCY, ge=1)
    # Retry backoff: base·2^(attempt-1) seconds, capped, with jitter (Retry-After wins).
    retry_base_delay_seconds: float = Field(default=0.5, gt=0)
    retry_max_delay_seconds: float = Field(default=30.0, gt=0)
    # OpenAI `n`: "auto" sends it and falls back to one call per sample when a server answers
    # with fewer choices (llama.cpp server does); "native" always; "separate" never.
    openai_n: Literal["auto", "native", "separate"] = "auto"
    # API teacher calls of a job with at least `teacher_processes_from_concurrency` calls in
    # flight run in this many processes beside the service's (started at the first such job and
    # shared by later ones; 0: never; unset: one per usable core (a container's CPU limit
    # counts), at most 4, none on one core). One event loop spends about 2 ms of CPU on each SDK
    # call, so at a few hundred calls a second it, not the teacher, sets the pace
    # (benchmarks/RESULTS.md, generator_fanout). Limits and the cache stay here.
    teacher_processes: int | None = Field(default=None, ge=0)
    teacher_processes_from_concurrency: int = Field(default=32, ge=1)
    # Context window of the in-process llama.cpp teacher (PROVIDER_LOCAL).
    local_n_ctx: int = Field(default=2048, ge=256)
    # Progress events at most this often (plus one at the start and one at the end).
    progress_interval_seconds: float = Field(default=1.0, ge=0)
    max_dataset_bytes: int = Field(default=1 << 30, ge=1)
    # Price table overrides, USD per million tokens: {"gpt-4o": [2.5, 10.0]} (JSON in env).
    price_overrides: dict[str, tuple[float, float]] = Field(default_factory=dict)

    def call_process_count(self) -> int:
        if self.teacher_processes is not None:
            return self.teacher_processes
        cores = usable_cores()
        return min(4, cores) if cores > 1 else 0  # on one core they only add work


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may use: its CPU affinity, capped by a container's CPU limit (cgroup
    v2 `cpu.max`, or v1 `cpu/cpu.cfs_quota_us`), which the affinity does not show."""
    cores = len(os.sched_getaffinity(0))
    for quota_file, period_file in ((cgroup / "cpu.max", None),
                                    (cgroup / "cpu" / "cpu.cfs_quota_us",
                                     cgroup / "cpu" / "cpu.cfs_period_us")):
        try:
            fields = quota_file.read_text().split()
            if period_file is not None:
                fields.append(period_file.read_text().strip())
            quota, period = fields[0], float(fields[1])
        except (OSError, IndexError, ValueError):
            continue
        if quota not in ("max", "-1"):
            return max(1, min(cores, math.ceil(float(quota) / period)))
    return cores
