"""The one way every distill service serves: `serve(settings, build)`.

grpc.aio server with the standard health service, server reflection (grpcurl needs no .proto
files, and resolves methods too: services/common/reflection.py), the interceptor (request id,
auth, error mapping, RPC log), message size limits and keepalive, and the service's Prometheus
metrics over HTTP (services/common/metrics.py). SIGTERM/SIGINT → health NOT_SERVING → stop
accepting RPCs → in-flight RPCs get `grace_seconds` to finish.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from services.common.auth import Authenticator, StaticToken
from services.common.heap import freeze_startup_objects
from services.common.interceptors import ServerInterceptor
from services.common.metrics import MetricsServer
from services.common.reflection import enable as enable_reflection
from services.common.settings import ServiceSettings

log = logging.getLogger("distill.server")


Hook = Callable[[], Awaitable[Any] | Any]


@dataclass(frozen=True)
class Service:
    """A servicer and how to add it: `Service.of(gateway_pb2, gateway_pb2_grpc, servicer)`.

    `on_start` runs once the server listens (e.g. resume unfinished jobs); `on_shutdown` runs
    after health turns NOT_SERVING and before in-flight RPCs get their grace period;
    `on_stopped` runs once every RPC has ended (close what RPCs use: channels, databases). `metrics`
    is the service's own Prometheus registry (services/common/metrics.py), served over HTTP on
    the settings' metrics port. `authenticator` resolves callers' keys to projects (the
    gateway, and the router by asking it); without one, the settings' `auth_token` is the one
    key. `log_fields`, asked after `on_start`, adds fields to the "serving" log line (the
    router's HTTP port).
    """

    full_name: str
    servicer: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    on_start: Hook | None = None
    on_shutdown: Hook | None = None
    metrics: CollectorRegistry | None = None
    on_stopped: Hook | None = None
    authenticator: Authenticator | None = None
    log_fields: Callable[[], dict[str, Any]] | None = None

    @classmethod
    def of(cls, pb2_module: Any, pb2_grpc_module: Any, servicer: Any, *,
           on_start: Hook | None = None, on_shutdown: Hook | None = None,
           on_stopped: Hook | None = None, metrics: CollectorRegistry | None = None,
           authenticator: Authenticator | None = None,
           log_fields: Callable[[], dict[str, Any]] | None = None) -> Service:
        (descriptor,) = pb2_module.DESCRIPTOR.services_by_name.values()
        add = getattr(pb2_grpc_module, f"add_{descriptor.name}Servicer_to_server")
        return cls(descriptor.full_name, servicer, add, on_start, on_shutdown, metrics,
                   on_stopped, authenticator, log_fields)


async def _call(hook: Hook | None) -> None:
    if hook is not None and inspect.isawaitable(result := hook()):
        await result


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    keepalive_ms = int(settings.keepalive_seconds * 1000)
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", min(keepalive_ms, 10_000)),
        ("grpc.http2.max_pings_without_data", 0),
    ]


class RunningServer:
    """A started server: its ports, its health servicer and a way to stop it gracefully."""

    def __init__(self, server: grpc.aio.Server, port: int, health_servicer: Any,
                 services: Sequence[Service], grace: float, metrics: MetricsServer) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.metrics = metrics
        self.metrics_port = metrics.port
        self._services = services
        self._grace = grace

    async def stop(self) -> None:
        # Health first, so load balancers stop routing here before the listener closes.
        for name in ("", *(s.full_name for s in self._services)):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        log.info("stopping", extra={"grace_seconds": self._grace})
        for service in self._services:
            await _call(service.on_shutdown)
        await self.server.stop(self._grace)
        for service in self._services:
            await _call(service.on_stopped)
        self.metrics.stop()


async def start(settings: ServiceSettings, services: Sequence[Service]) -> RunningServer:
    """Starts serving and returns at once (tests use this; `serve` waits for a signal)."""
    settings.refuse_unauthenticated_bind()
    authenticator = next((s.authenticator for s in services if s.authenticator), None)
    if authenticator is None:
        authenticator = StaticToken(settings.accepted_token())
    server = grpc.aio.server(
        interceptors=[ServerInterceptor(authenticator)], options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for service in services:
        service.add_to_server(service.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.full_name for s in services]
    enable_reflection([*names, health.SERVICE_NAME], server)
    address = f"{settings.host}:{settings.bind_port}"
    credentials = settings.server_credentials()
    port = server.add_secure_port(address, credentials) if credentials else \
        server.add_insecure_port(address)
    metrics = MetricsServer(settings.metrics_host, settings.metrics_bind_port,
                            [s.metrics for s in services if s.metrics is not None])
    try:
        await server.start()
        for service in services:
            await _call(service.on_start)
    except BaseException:
        metrics.stop()
        raise
    # Logged before health says SERVING: whoever sees SERVING can read the ports (port 0 means
    # the kernel picked them) from this line.
    fields = {"host": settings.host, "port": port, "services": names,
              "metrics_host": metrics.host, "metrics_port": metrics.port,
              "tls": credentials is not None}
    for service in services:
        if service.log_fields is not None:
            fields.update(service.log_fields())
    log.info("serving", extra=fields)
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer, services, settings.grace_seconds,
                         metrics)


async def serve(settings: ServiceSettings,
                build: Callable[[ServiceSettings], Sequence[Service]]) -> None:
    """Builds the services inside the event loop, serves until SIGTERM or SIGINT, then shuts
    down gracefully."""
    running = await start(settings, build(settings))
    freeze_startup_objects()
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    serving = asyncio.ensure_future(running.server.wait_for_termination())
    stopping = asyncio.ensure_future(stop_requested.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if stop_requested.is_set():
        await running.stop()
    stopping.cancel()
    await serving
    log.info("stopped")
