"""Settings of the trainer service (env prefix DISTILL_TRAINER_, then DISTILL_)."""

from __future__ import annotations

from typing import ClassVar

from services.common.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    service_name: ClassVar[str] = "trainer"
    default_port: ClassVar[int] = 50054
