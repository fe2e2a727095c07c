"""Settings of the gateway (env prefix DISTILL_GATEWAY_, then DISTILL_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from services.common.channels import ChannelSecurity
from services.common.settings import ModelCallSettings


class GatewaySettings(ModelCallSettings):
    service_name: ClassVar[str] = "gateway"
    default_port: ClassVar[int] = 50051

    # Where the stage services listen (`distill up` sets these for the embedded suite).
    generator_address: str = "127.0.0.1:50052"
    judge_address: str = "127.0.0.1:50053"
    # The trainer when there is one; `trainer_addresses` (comma-separated host:port) replaces it
    # with several. A name that resolves to several addresses (a Kubernetes headless Service) is
    # one replica per address, re-resolved at every scheduling pass.
    trainer_address: str = "127.0.0.1:50054"
    trainer_addresses: str = ""
    exporter_address: str = "127.0.0.1:50055"
    # TLS to the stage services: the CA (PEM) that signed their certificates; unset, plaintext.
    stage_tls_ca_file: Path | None = None
    # The name their certificates must carry when not the host dialled (trainer replicas are
    # dialled at the addresses a Service name resolves to).
    stage_tls_server_name: str = ""
    # The SQLite job store (and projects' API keys, stored hashed).
    db_path: Path = Path(".distill/gateway.db")
    # The key that creates, lists and revokes projects' API keys (AdminService, `distill keys`).
    # Unset: no project keys are accepted, and `auth_token` (or, unset too, no key at all) is
    # the one `default` project's.
    admin_token: SecretStr | None = None
    # A stage stream that sends nothing for this long is treated as lost.
    stage_idle_timeout_seconds: float = Field(default=900.0, gt=0)
    # A stage call waits this long for its service to be reachable (a restart, a rollout)...
    stage_connect_timeout_seconds: float = Field(default=60.0, gt=0)
    # ...and runs again when its stream is lost in transport, this many attempts in all.
    stage_attempts: int = Field(default=3, ge=1)
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    # How long a training task waits for a free trainer before the job fails.
    trainer_wait_seconds: float = Field(default=3600.0, gt=0)
    # While a task waits: seconds between scheduling passes (DNS, each replica's status).
    trainer_schedule_interval_seconds: float = Field(default=2.0, gt=0)
    trainer_status_timeout_seconds: float = Field(default=10.0, gt=0)
    # Times a job's training moves to another replica after losing one before the job fails.
    trainer_max_moves: int = Field(default=3, ge=0)
    # What an hour of the machine serving a self-hosted model costs (USD): the evaluation's
    # cost per 1,000 requests of the student (and of a local teacher) is its latency times this.
    serving_usd_per_hour: float = Field(default=0.50, ge=0)
    # Progressive promotions: seconds between looks at each one's live traffic.
    rollout_check_seconds: float = Field(default=30.0, gt=0)
    # Jobs of one project running at once; the project's others wait PENDING and start in
    # submission order as its running ones end.
    max_running_jobs: int = Field(default=4, ge=1)
    # Retention (services/gateway/retention.py): uploads and teacher-cache entries older than
    # these are deleted by a sweep every `retention_sweep_seconds`; 0 keeps them. An upload a
    # job that has not ended uses is kept.
    upload_ttl_days: float = Field(default=0.0, ge=0)
    teacher_cache_ttl_days: float = Field(default=30.0, ge=0)
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # The router's traces: whole UTC days kept besides today (0 keeps them all).
    trace_retention_days: float = Field(default=30.0, ge=0)
    # WatchAliases: the most alias changes a watcher may be behind (queued while it is slow, or
    # replayed when it resumes) before it is sent a fresh snapshot instead.
    alias_watch_backlog: int = Field(default=256, ge=1)

    @property
    def stage_security(self) -> ChannelSecurity:
        return ChannelSecurity(self.stage_tls_ca_file, self.stage_tls_server_name)

    @property
    def trainer_targets(self) -> list[str]:
        return [a.strip() for a in (self.trainer_addresses or self.trainer_address).split(",")
                if a.strip()]
