"""Settings of the gateway service (env prefix DISTILL_GATEWAY_, then DISTILL_)."""

from __future__ import annotations

from typing import ClassVar

from services.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: ClassVar[str] = "gateway"
    default_port: ClassVar[int] = 50051
