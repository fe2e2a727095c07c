"""Settings of the judge service (env prefix DISTILL_JUDGE_, then DISTILL_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.settings import ServiceSettings


class JudgeSettings(ServiceSettings):
    service_name: ClassVar[str] = "judge"
    default_port: ClassVar[int] = 50053

    # Candidate groups judged at once per stream (each group's candidates run concurrently too).
    max_concurrent_groups: int = Field(default=16, ge=1, le=1024)
