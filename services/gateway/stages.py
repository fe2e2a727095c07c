"""Calls into the stage services. Each function drives one stream and reports through callbacks.

Streams carry per-message idle timeouts instead of one deadline: a training run may take hours
but must keep talking.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from distill.v1 import (
    common_pb2,
    exporter_pb2,
    exporter_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    judge_pb2,
    judge_pb2_grpc,
    trainer_pb2,
)
from services.common import errors
from services.gateway.trainer_pool import ReplicaBusy, ReplicaLost, TrainerPool

T = TypeVar("T")
_STATUS_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.DATA_LOSS: errors.DataLoss,
}


def stage_error(stage: str, exc: grpc.aio.AioRpcError) -> errors.DistillError:
    """A stage's failure as our own error, keeping its status and naming the stage."""
    cls = _STATUS_ERRORS.get(exc.code(), errors.Unavailable)
    return cls(f"{stage}: {exc.details() or exc.code().name}")


async def idle_timeout(stream: AsyncIterator[T], seconds: float, stage: str) -> AsyncIterator[T]:
    iterator = aiter(stream)
    while True:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel (CancelJob)
            # that arrives together with a message, and the job would run on.
            async with asyncio.timeout(seconds):
                item = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise errors.Unavailable(f"{stage}: no message for {seconds:.0f}s") from None
        yield item


async def drive(call, stage: str, idle_seconds: float,
                handle: Callable[[T], Awaitable[None]]) -> None:
    """Feeds each message of a stage's stream to `handle`, with the idle timeout; maps the
    stage's status to our errors and always cancels the call (spending stops with us)."""
    try:
        async for event in idle_timeout(call, idle_seconds, stage):
            await handle(event)
    except grpc.aio.AioRpcError as exc:
        raise stage_error(stage, exc) from None
    finally:
        call.cancel()


def auth_metadata(auth_token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {auth_token}"),) if auth_token else ()


@dataclass
class StageClients:
    """One channel per stage service, shared by all jobs; trainers are a pool of replicas
    (trainer_pool.py), each with its own channel."""

    generator: generator_pb2_grpc.GeneratorServiceStub
    judge: judge_pb2_grpc.JudgeServiceStub
    trainers: TrainerPool
    exporter: exporter_pb2_grpc.ExporterServiceStub
    channels: tuple[grpc.aio.Channel, ...]
    idle_seconds: float
    metadata: tuple[tuple[str, str], ...] = ()

    @classmethod
    def connect(cls, generator: str, judge: str, trainer: str | TrainerPool, exporter: str,
                idle_seconds: float, auth_token: str | None = None) -> StageClients:
        """`trainer`: a pool, or `host:port[,host:port...]` for a pool with default settings."""
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        channels = tuple(grpc.aio.insecure_channel(a, options=options)
                         for a in (generator, judge, exporter))
        metadata = auth_metadata(auth_token)
        trainers = trainer if isinstance(trainer, TrainerPool) else \
            TrainerPool(trainer, metadata=metadata)
        return cls(generator_pb2_grpc.GeneratorServiceStub(channels[0]),
                   judge_pb2_grpc.JudgeServiceStub(channels[1]),
                   trainers,
                   exporter_pb2_grpc.ExporterServiceStub(channels[2]),
                   channels, idle_seconds, metadata)

    async def trainer_status(self) -> trainer_pb2.GetTrainerStatusResponse | None:
        """The best trainer replica's capacity and memory, or None when none answers (the
        trainer re-checks itself)."""
        return await self.trainers.status()

    async def close(self) -> None:
        await self.trainers.close()
        for channel in self.channels:
            await channel.close()


@dataclass(frozen=True)
class CurationResult:
    candidates: common_pb2.ArtifactRef
    teacher_usage: common_pb2.Usage
    curated: common_pb2.ArtifactRef
    statistics: judge_pb2.JudgeStatistics


async def generate_and_judge(
    clients: StageClients,
    generate: generator_pb2.GenerateRequest,
    judge_config: judge_pb2.JudgeConfig,
    on_generate: Callable[[generator_pb2.GenerateProgress], Awaitable[None]],
    on_judged: Callable[[judge_pb2.JudgedGroup], Awaitable[None]],
) -> CurationResult:
    """Pipes the generator's candidate groups straight into the judge as they arrive."""
    to_judge: asyncio.Queue[judge_pb2.JudgeRequest | None] = asyncio.Queue()
    await to_judge.put(judge_pb2.JudgeRequest(config=judge_config))

    async def judge_requests():
        while (request := await to_judge.get()) is not None:
            yield request

    judge_call = clients.judge.Judge(judge_requests(), metadata=clients.metadata)
    summary: dict[str, object] = {}

    async def on_generated(event: generator_pb2.GenerateResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "group":
            await to_judge.put(judge_pb2.JudgeRequest(group=event.group))
        elif kind == "progress":
            await on_generate(event.progress)
        elif kind == "summary":
            summary["generate"] = event.summary

    async def on_judge_event(event: judge_pb2.JudgeResponse) -> None:
        if event.HasField("group"):
            await on_judged(event.group)
        else:
            summary["judge"] = event.summary

    async def run_generator():
        call = clients.generator.Generate(generate, metadata=clients.metadata)
        await drive(call, "generator", clients.idle_seconds, on_generated)
        await to_judge.put(None)  # half-close the judge stream: it answers with the summary

    async def run_judge():
        await drive(judge_call, "judge", clients.idle_seconds, on_judge_event)

    generator_task = asyncio.create_task(run_generator())
    judge_task = asyncio.create_task(run_judge())
    try:
        await asyncio.gather(generator_task, judge_task)
    finally:
        for task in (generator_task, judge_task):
            task.cancel()
        judge_call.cancel()
    if "generate" not in summary or "judge" not in summary:
        raise errors.Unavailable("generation or judging ended without a summary")
    gen: generator_pb2.GenerateSummary = summary["generate"]  # type: ignore[assignment]
    judged: judge_pb2.JudgeSummary = summary["judge"]  # type: ignore[assignment]
    return CurationResult(gen.candidates, gen.usage, judged.curated, judged.statistics)


async def generate(clients: StageClients, request: generator_pb2.GenerateRequest,
                   on_progress: Callable[[generator_pb2.GenerateProgress], Awaitable[None]]
                   ) -> tuple[list[common_pb2.CandidateGroup], generator_pb2.GenerateSummary]:
    """All candidate groups of one generation, in the order they finished, and its summary."""
    groups: list[common_pb2.CandidateGroup] = []
    summaries: list[generator_pb2.GenerateSummary] = []

    async def handle(event: generator_pb2.GenerateResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "group":
            groups.append(event.group)
        elif kind == "progress":
            await on_progress(event.progress)
        elif kind == "summary":
            summaries.append(event.summary)

    call = clients.generator.Generate(request, metadata=clients.metadata)
    await drive(call, "generator", clients.idle_seconds, handle)
    if not summaries:
        raise errors.Unavailable("generator: stream ended without a summary")
    return groups, summaries[-1]


async def judge(clients: StageClients, config: judge_pb2.JudgeConfig,
                groups: list[common_pb2.CandidateGroup],
                on_judged: Callable[[judge_pb2.JudgedGroup], Awaitable[None]]
                ) -> judge_pb2.JudgeSummary:
    """Scores a fixed set of groups in one Judge stream."""
    summaries: list[judge_pb2.JudgeSummary] = []

    async def requests():
        yield judge_pb2.JudgeRequest(config=config)
        for group in groups:
            yield judge_pb2.JudgeRequest(group=group)

    async def handle(event: judge_pb2.JudgeResponse) -> None:
        if event.HasField("group"):
            await on_judged(event.group)
        else:
            summaries.append(event.summary)

    call = clients.judge.Judge(requests(), metadata=clients.metadata)
    await drive(call, "judge", clients.idle_seconds, handle)
    if not summaries:
        raise errors.Unavailable("judge: stream ended without a summary")
    return summaries[-1]


# A stream that ends with these lost its replica (killed, drained, unreachable), not the job.
_REPLICA_LOST_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                 grpc.StatusCode.DEADLINE_EXCEEDED})


def _replica_lost(exc: errors.DistillError) -> bool:
    rpc = exc.__context__  # stage_error() keeps the RPC error there
    if isinstance(rpc, grpc.aio.AioRpcError):
        return rpc.code() in _REPLICA_LOST_CODES
    return isinstance(exc, errors.Unavailable)  # the idle timeout: the replica went silent


async def train(clients: StageClients, request: trainer_pb2.TrainRequest,
                on_event: Callable[[trainer_pb2.TrainResponse], Awaitable[None]], *,
                wait_seconds: float,
                on_queue: Callable[[str], None] | None = None,
                ) -> trainer_pb2.TrainFinished:
    """Trains on a replica from the pool: waits in its queue for a free slot, goes back there
    when the replica turns out busy, moves to another replica (resuming from the last
    checkpoint: `request.resume`) when the replica is lost mid-training."""

    async def attempt(replica) -> trainer_pb2.TrainFinished:
        finished: list[trainer_pb2.TrainFinished] = []
        seen = False

        async def handle(event: trainer_pb2.TrainResponse) -> None:
            nonlocal seen
            seen = True
            await on_event(event)
            if event.HasField("finished"):
                finished.append(event.finished)

        stage = f"trainer {replica.address}"
        try:
            await drive(replica.train(request), stage, clients.idle_seconds, handle)
        except errors.ResourceExhausted as exc:
            if not seen:  # refused at once: at capacity
                raise ReplicaBusy(str(exc)) from None
            raise
        except (errors.Unavailable, errors.DeadlineExceeded) as exc:
            if _replica_lost(exc):
                raise ReplicaLost(str(exc)) from None
            raise
        if not finished:
            raise ReplicaLost(f"{stage}: stream ended without a finished event")
        return finished[-1]

    return await clients.trainers.run(request.job_id, attempt, wait_seconds=wait_seconds,
                                      on_queue=on_queue)


async def export(clients: StageClients, request: exporter_pb2.ExportRequest,
                 on_progress: Callable[[exporter_pb2.ExportProgress], Awaitable[None]]
                 ) -> exporter_pb2.ExportManifest:
    manifests: list[exporter_pb2.ExportManifest] = []

    async def handle(event: exporter_pb2.ExportResponse) -> None:
        if event.HasField("progress"):
            await on_progress(event.progress)
        else:
            manifests.append(event.manifest)

    call = clients.exporter.Export(request, metadata=clients.metadata)
    await drive(call, "exporter", clients.idle_seconds, handle)
    if not manifests:
        raise errors.Unavailable("exporter: stream ended without a manifest")
    return manifests[-1]
