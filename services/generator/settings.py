"""Settings of the generator service (env prefix DISTILL_GENERATOR_, then DISTILL_)."""

from __future__ import annotations

from typing import ClassVar

from services.common.settings import ServiceSettings


class GeneratorSettings(ServiceSettings):
    service_name: ClassVar[str] = "generator"
    default_port: ClassVar[int] = 50052
