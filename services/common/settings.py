"""Settings shared by every service; each service subclasses with its own env prefix.

A field is read from `DISTILL_<SERVICE>_<FIELD>` first, then from `DISTILL_<FIELD>`, so values
every service needs (store URL, auth token) can be set once for the whole suite.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import ClassVar

import grpc
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.common.errors import StartupRefused
from services.common.providers.endpoints import (
    DEFAULT_ENDPOINTS,
    EndpointPolicy,
    ProviderEndpoint,
)
from services.common.storage import ArtifactStore, open_store

MiB = 1024 * 1024


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "distill"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISTILL_", extra="ignore")

    # Set by subclasses: the service's short name ("generator", ...) and its default port.
    service_name: ClassVar[str] = ""
    default_port: ClassVar[int] = 0
    # A stage service: only the gateway calls it, with internal_token.
    stage: ClassVar[bool] = False

    host: str = "127.0.0.1"
    # None means the service's default port; 0 picks a free port (logged at start).
    port: int | None = None
    # Prometheus metrics over HTTP, unauthenticated, so on their own address: loopback unless
    # set (a cluster sets 0.0.0.0 and lets only its Prometheus reach the port). None means the
    # gRPC port + 1000 (51051..51055 by default), or a free port when the gRPC port is 0; 0
    # picks a free port (logged at start).
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # When set, every RPC but health checks needs `authorization: Bearer <token>`.
    auth_token: SecretStr | None = None
    # TLS: the server's certificate chain and private key (PEM files), both or neither. Unset,
    # the port speaks plaintext (loopback, or behind a proxy that terminates TLS).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # The gateway's credential towards the stage services (generator, judge, trainer,
    # exporter): they accept only it, never a user's token; the gateway sends it. Set it
    # suite-wide (DISTILL_INTERNAL_TOKEN); `distill up` makes a random one per run.
    internal_token: SecretStr | None = None
    # A stage service refuses to start on a non-loopback address without internal_token;
    # this (or `--insecure`) overrides that, for networks where something else authenticates.
    insecure: bool = False
    # Seconds in-flight RPCs get to finish after SIGTERM.
    grace_seconds: float = Field(default=30.0, ge=0)
    max_message_bytes: int = Field(default=16 * MiB, ge=4 * MiB)
    # RPCs in progress at once (open streams included, WatchJob too); one more is refused with
    # RESOURCE_EXHAUSTED instead of queueing without bound.
    max_concurrent_rpcs: int = Field(default=256, ge=1)
    keepalive_seconds: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
    # Artifact store: file:// (embedded default) or s3://bucket[/prefix].
    store_url: str = "file:.distill/artifacts"
    s3_endpoint: str = ""
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_secure: bool = False
    # Heavy local products (dequantised models, converter) shared across clones.
    cache_dir: Path = Field(default_factory=default_cache_dir)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServiceSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file: set both (TLS) or neither")
        return self

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """The port's TLS credentials; None for plaintext."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return grpc.ssl_server_credentials(
            [(self.tls_key_file.read_bytes(), self.tls_cert_file.read_bytes())])

    @field_validator("auth_token", "internal_token", mode="after")
    @classmethod
    def _no_empty_token(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty token (`DISTILL_AUTH_TOKEN=` in a template) is no token, not one anyone
        can send."""
        return value if value is not None and value.get_secret_value() else None

    def accepted_token(self) -> str | None:
        """The bearer token callers of this service must send."""
        token = self.internal_token if self.stage else self.auth_token
        return token.get_secret_value() if token is not None else None

    def refuse_unauthenticated_bind(self) -> None:
        """StartupRefused for a stage service reachable beyond this machine without a token."""
        if not self.stage or self.accepted_token() is not None or self.insecure:
            return
        if self.host == "localhost" or _is_loopback(self.host):
            return
        raise StartupRefused(
            f"{self.service_name} would serve on {self.host} without authentication: set "
            "DISTILL_INTERNAL_TOKEN (the gateway sends the same one), bind 127.0.0.1, or pass "
            "--insecure (DISTILL_INSECURE=true) if something else guards this address")

    @property
    def bind_port(self) -> int:
        return self.default_port if self.port is None else self.port

    @property
    def metrics_bind_port(self) -> int:
        if self.metrics_port is not None:
            return self.metrics_port
        return 0 if self.bind_port == 0 else self.bind_port + 1000

    def open_store(self) -> ArtifactStore:
        """The artifact store these settings name (one per service process)."""
        return open_store(
            self.store_url,
            endpoint=self.s3_endpoint or None,
            access_key=self.s3_access_key.get_secret_value() if self.s3_access_key else None,
            secret_key=self.s3_secret_key.get_secret_value() if self.s3_secret_key else None,
            secure=self.s3_secure,
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        if cls.service_name:
            prefix = f"DISTILL_{cls.service_name.upper()}_"
            sources.append(EnvSettingsSource(settings_cls, env_prefix=prefix))
        sources.append(env_settings)  # DISTILL_<FIELD>, the suite-wide fallback
        return tuple(sources)


class ModelCallSettings(ServiceSettings):
    """Settings of the services that call models or check calls to them (gateway, generator,
    judge): where calls may go and which keys go along (services/common/providers/endpoints.py).
    Set them once for the suite (DISTILL_PROVIDERS, ...) so the gateway's preflight and the
    services agree."""

    # name -> {"provider": "openai"|"anthropic", "base_url": "...", "api_key_env": "..."}
    # (JSON in env); a spec picks one with ModelSpec.endpoint.
    providers: dict[str, ProviderEndpoint] = Field(
        default_factory=lambda: dict(DEFAULT_ENDPOINTS))
    # Hosts a spec's own base_url may name (JSON list in env); such calls carry no server key.
    allowed_base_url_hosts: list[str] = Field(default_factory=list)
    allow_private_addresses: bool = False
    allow_loopback_addresses: bool = False

    def endpoint_policy(self) -> EndpointPolicy:
        return EndpointPolicy(
            dict(self.providers), frozenset(h.lower() for h in self.allowed_base_url_hosts),
            self.allow_private_addresses, self.allow_loopback_addresses)
