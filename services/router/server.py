"""RouterService over gRPC (thin) and the OpenAI HTTP API beside it, on one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx

from distill.v1 import directory_pb2_grpc, gateway_pb2_grpc, router_pb2, router_pb2_grpc
from services.common.auth import current_principal
from services.common.channels import ChannelSecurity
from services.common.judging.models import JudgeModels
from services.common.metrics import RouterMetrics
from services.common.providers import Limits, RetryPolicy
from services.common.server import Service
from services.common.traces.recorder import TraceRecorder
from services.router.alias_watch import follow
from services.router.answering import Answerer
from services.router.auth import callers
from services.router.chat import from_proto
from services.router.engines import EngineSupervisor
from services.router.http_api import HttpApi
from services.router.live_judge import LiveJudge
from services.router.routing import Router
from services.router.settings import RouterSettings
from services.router.shadows import Shadows
from services.router.student_files import StudentFiles
from services.router.targets import AliasTargets
from services.router.tracing import Tracing


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, router: Router) -> None:
        self.router = router

    async def Chat(self, request: router_pb2.ChatRequest,  # noqa: N802 - gRPC method name
                   context: grpc.aio.ServicerContext) -> router_pb2.ChatResponse:
        # The interceptor resolved the caller's key to its project (services/router/auth.py).
        answer = await self.router.answer(from_proto(request), current_principal().project)
        return router_pb2.ChatResponse(
            content=answer.content, finish_reason=answer.finish_reason,
            served_by=answer.served_by.as_proto(), usage=answer.usage_proto())

    async def ChatStream(self, request: router_pb2.ChatStreamRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext
                         ) -> AsyncIterator[router_pb2.ChatStreamResponse]:
        async for delta in self.router.stream(from_proto(request), current_principal().project):
            if (final := delta.final) is not None:
                yield router_pb2.ChatStreamResponse(
                    finish_reason=final.finish_reason, served_by=final.served_by.as_proto(),
                    usage=final.usage_proto())
            elif delta.text:
                yield router_pb2.ChatStreamResponse(delta=delta.text)


def build(settings: RouterSettings) -> list[Service]:
    folder = Path(settings.cache_dir) / "router"
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=256), trust_env=False)
    engines = EngineSupervisor(settings, http, folder / "engine-logs")
    answerer = Answerer(settings, engines,
                        StudentFiles(settings.open_store(), folder / "students"), http)
    # With the internal token the gateway answers for every project; else the router is one
    # more client of the default project.
    credential = settings.internal_token or settings.auth_token
    channel = ChannelSecurity(settings.gateway_tls_ca_file).channel(settings.gateway_address)
    gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
    directory = directory_pb2_grpc.DirectoryServiceStub(channel)
    metadata = ((("authorization", f"Bearer {credential.get_secret_value()}"),)
                if credential else ())
    authenticator = callers(settings, directory, metadata)
    targets = AliasTargets(
        directory, metadata=metadata,
        default_max_tokens=settings.max_tokens_limit, ttl_seconds=settings.alias_ttl_seconds,
        warm=answerer.warm)
    metrics = RouterMetrics(
        engines_loaded=lambda: sum(e.running for e in engines.engines.values()),
        engine_restarts=lambda: engines.restarts)
    recorder = TraceRecorder(settings.open_store(), capacity=settings.trace_capacity,
                             batch_rows=settings.trace_batch_rows,
                             flush_seconds=settings.trace_flush_seconds,
                             counted=metrics.traced) if settings.trace_capture else None
    judge = None
    if recorder is not None:  # a score is kept in its trace: nothing to judge without them
        def open_models() -> JudgeModels:
            return JudgeModels(Limits(max_concurrency=settings.judge_concurrency,
                                      max_retries=settings.judge_max_retries),
                               RetryPolicy(max_retries=settings.judge_max_retries),
                               settings.endpoint_policy(), fatal_stops_all=False)

        judge = LiveJudge(recorder, open_models, metrics, concurrency=settings.judge_concurrency,
                          queue=settings.judge_queue)
    tracing = Tracing(recorder, judge)
    shadows = Shadows(targets, answerer, tracing, metrics, settings.shadow_concurrency)
    router = Router(targets, answerer, metrics, tracing, shadows)
    api = HttpApi(settings, router, authenticator)
    writers: list[asyncio.Task] = []

    async def on_start() -> None:
        engines.start_reaper()
        loop = asyncio.get_running_loop()
        if recorder is not None:
            writers.append(loop.create_task(recorder.run()))
        writers.append(loop.create_task(follow(gateway, metadata, targets,
                                               settings.alias_feed_reconnect_seconds)))
        await api.start(settings.host, settings.http_bind_port)

    async def on_shutdown() -> None:
        await api.stop()
        await shadows.aclose()
        if judge is not None:
            await judge.aclose()  # what it was still scoring is recorded unscored
        for writer in writers:
            writer.cancel()
        if recorder is not None:
            await recorder.flush()  # what was recorded before the stop is written

    async def on_stopped() -> None:
        await answerer.aclose()
        await engines.aclose()
        await http.aclose()
        await channel.close()

    return [Service.of(router_pb2, router_pb2_grpc, RouterServicer(router), on_start=on_start,
                       on_shutdown=on_shutdown, on_stopped=on_stopped, metrics=metrics.registry,
                       authenticator=authenticator, log_fields=lambda: {"http_port": api.port})]
