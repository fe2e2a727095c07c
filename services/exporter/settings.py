"""Settings of the exporter service (env prefix DISTILL_EXPORTER_, then DISTILL_)."""

from __future__ import annotations

from typing import ClassVar

from services.common.settings import ServiceSettings


class ExporterSettings(ServiceSettings):
    service_name: ClassVar[str] = "exporter"
    default_port: ClassVar[int] = 50055
