"""Settings of the gateway (env prefix DISTILL_GATEWAY_, then DISTILL_)."""

from __future__ import annotations

from typing import ClassVar

from services.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: ClassVar[str] = "gateway"
    default_port: ClassVar[int] = 50051

    # Where the stage services listen (`distill up` sets these for the embedded suite).
    generator_address: str = "127.0.0.1:50052"
    judge_address: str = "127.0.0.1:50053"
    trainer_address: str = "127.0.0.1:50054"
    exporter_address: str = "127.0.0.1:50055"
