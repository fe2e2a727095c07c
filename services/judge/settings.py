"""Settings of the judge service (env prefix DISTILL_JUDGE_, then DISTILL_)."""

from __future__ import annotations

from typing import ClassVar

from services.common.settings import ServiceSettings


class JudgeSettings(ServiceSettings):
    service_name: ClassVar[str] = "judge"
    default_port: ClassVar[int] = 50053
