"""Settings of the judge service (env prefix DISTILL_JUDGE_, then DISTILL_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.settings import ModelCallSettings


class JudgeSettings(ModelCallSettings):
    service_name: ClassVar[str] = "judge"
    default_port: ClassVar[int] = 50053
    stage: ClassVar[bool] = True

    # Candidate groups judged at once per stream (each group's candidates run concurrently too).
    max_concurrent_groups: int = Field(default=16, ge=1, le=1024)
    # Limits on LLM-judge model calls per stream (0: unlimited).
    max_concurrent_calls: int = Field(default=16, ge=1, le=1024)
    requests_per_minute: int = Field(default=0, ge=0)
    tokens_per_minute: int = Field(default=0, ge=0)
    max_retries: int = Field(default=6, ge=0, le=20)
