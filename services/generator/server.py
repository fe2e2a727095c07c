"""gRPC servicer of the generator service: thin, the logic lives in generation.py beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import grpc

from distill.v1 import generator_pb2, generator_pb2_grpc
from services.common.auth import DEFAULT_PROJECT, project_name
from services.common.metrics import GeneratorMetrics
from services.common.providers import (
    ModelClient,
    RateLimiter,
    RetryPolicy,
    open_provider,
)
from services.common.providers.call_processes import CallProcesses
from services.common.server import Service
from services.common.specs.layout import teacher_cache_prefix
from services.common.specs.members import Member
from services.common.storage import ArtifactStore
from services.common.teacher_cache import TeacherCache
from services.common.teacher_cache_keys import KeyLog
from services.generator.generation import Generation, GenerationPlan, plan
from services.generator.settings import GeneratorSettings


class GeneratorService(generator_pb2_grpc.GeneratorServiceServicer):
    def __init__(self, settings: GeneratorSettings, store: ArtifactStore,
                 metrics: GeneratorMetrics | None = None) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics or GeneratorMetrics()
        count = settings.call_process_count()
        self.call_processes = CallProcesses(count) if count else None

    async def Generate(  # noqa: N802 - gRPC method name
        self, request: generator_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generator_pb2.GenerateResponse]:
        s = self.settings
        project = project_name(request.project or DEFAULT_PROJECT, "project")
        job = await asyncio.to_thread(
            plan, request, self.store,
            default_concurrency=s.default_max_concurrency,
            max_concurrency=s.max_concurrency_limit,
            price_overrides=s.price_overrides,
            max_dataset_bytes=s.max_dataset_bytes,
            cache_dir=s.cache_dir,
        )
        used = KeyLog()  # the run's manifest of cache keys, shared by its members' clients
        clients = [teacher_client(job, member, s, self.store, self.call_processes, project,
                                  used) for member in job.committee]
        observe = self.metrics.stream(job.teacher.provider, job.teacher.model)
        events = Generation(job, clients, self.store, progress_interval=s.progress_interval_seconds,
                            used=used).events()
        try:
            # Closed here, not whenever it is collected: it stores the run's manifest on the way.
            async with contextlib.aclosing(events):
                async for event in events:
                    observe(event)
                    yield event
        finally:
            for client in clients:
                await client.aclose()
            used.close()

    async def aclose(self) -> None:
        if self.call_processes is not None:
            await self.call_processes.aclose()


def teacher_client(job: GenerationPlan, member: Member, settings: GeneratorSettings,
                   store: ArtifactStore, call_processes: CallProcesses | None,
                   project: str, used: KeyLog) -> ModelClient:
    """One committee member's teacher behind its limiter (each member has the job's limits:
    they are different providers or endpoints), retries and the project's cache, whose keys it
    tells `used`; a job with many calls in flight has them made in the call processes."""
    wide = job.limits.max_concurrency >= settings.teacher_processes_from_concurrency
    field = "teacher" if len(job.committee) == 1 else \
        f"committee[{job.committee.index(member)}].teacher"
    provider = open_provider(
        member.teacher, field=field, policy=settings.endpoint_policy(),
        openai_n=settings.openai_n, local_n_ctx=settings.local_n_ctx,
        processes=call_processes if wide else None,
    )
    return ModelClient(
        provider,
        price=member.teacher.price,
        limiter=RateLimiter(job.limits),
        retry=RetryPolicy(job.limits.max_retries, settings.retry_base_delay_seconds,
                          settings.retry_max_delay_seconds),
        cache=TeacherCache(store, teacher_cache_prefix(project), on_use=used.add),
    )


def build(settings: GeneratorSettings) -> Sequence[Service]:
    service = GeneratorService(settings, settings.open_store())
    return [Service.of(generator_pb2, generator_pb2_grpc, service, on_stopped=service.aclose,
                       metrics=service.metrics.registry)]
