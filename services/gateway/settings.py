"""Settings of the gateway (env prefix DISTILL_GATEWAY_, then DISTILL_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from services.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: ClassVar[str] = "gateway"
    default_port: ClassVar[int] = 50051

    # Where the stage services listen (`distill up` sets these for the embedded suite).
    generator_address: str = "127.0.0.1:50052"
    judge_address: str = "127.0.0.1:50053"
    trainer_address: str = "127.0.0.1:50054"
    exporter_address: str = "127.0.0.1:50055"
    # The SQLite job store.
    db_path: Path = Path(".distill/gateway.db")
    # A stage stream that sends nothing for this long is treated as lost.
    stage_idle_timeout_seconds: float = Field(default=900.0, gt=0)
    # Unary calls to stage services.
    call_timeout_seconds: float = Field(default=30.0, gt=0)
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    # How long a training task waits for a free trainer before the job fails.
    trainer_wait_seconds: float = Field(default=3600.0, gt=0)
