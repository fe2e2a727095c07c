"""Calls into the stage services. Each function drives one stream and reports through callbacks.

Streams carry per-message idle timeouts instead of one deadline: a training run may take hours
but must keep talking.

A stage that restarts (a rolling update, a crash) does not fail the job: a call first waits up to
`connect_seconds` for the stage to be reachable, and a stream lost in transport is run again (at
most `attempts` times in all). Running it again repeats no paid work: the generator and the judge
answer completed calls from the teacher cache, and the exporter writes the same artifacts again.
A status the stage itself sent (its servicer failed, e.g. a teacher that stayed down) is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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
from services.common.channels import PLAINTEXT, ChannelSecurity
from services.common.completions import Emit, completions
from services.common.interceptors import REQUEST_ID_KEY
from services.common.spend import Spend
from services.gateway.stage_runs import GeneratorRuns, JudgeRuns
from services.gateway.trainer_pool import ReplicaBusy, ReplicaLost, TrainerPool

log = logging.getLogger("distill.gateway.stages")
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


async def _stream(clients: StageClients, stage: str, open_call: Callable[[], Any],
                  handle: Callable[[Any], Awaitable[None]]) -> None:
    """Waits until the stage is reachable, then drives the stream `open_call()` starts."""
    await clients.ready(stage)
    await drive(open_call(), stage, clients.idle_seconds, handle)


def _last(items: list[T], stage: str, what: str) -> T:
    if not items:
        raise errors.Unavailable(f"{stage}: stream ended without {what}")
    return items[-1]


async def _until_final(clients: StageClients, stage: str, open_call: Callable[[], Any],
                       final: str, on_other: Callable[[Any], Awaitable[None]]) -> Any:
    """Drives a stream whose last message carries the `final` field (a summary, a manifest)
    and returns that field; every other message goes to `on_other`."""
    finals: list[Any] = []

    async def handle(event: Any) -> None:
        if event.HasField(final):
            finals.append(getattr(event, final))
        else:
            await on_other(event)

    await _stream(clients, stage, open_call, handle)
    return _last(finals, stage, f"a {final}")


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
    channels: dict[str, tuple[str, grpc.aio.Channel]]  # stage -> (address, channel)
    idle_seconds: float
    metadata: tuple[tuple[str, str], ...] = ()
    connect_seconds: float = 60.0
    attempts: int = 3

    @classmethod
    def connect(cls, generator: str, judge: str, trainer: str | TrainerPool, exporter: str,
                idle_seconds: float, auth_token: str | None = None, *,
                connect_seconds: float = 60.0, attempts: int = 3,
                security: ChannelSecurity = PLAINTEXT) -> StageClients:
        """`trainer`: a pool, or `host:port[,host:port...]` for a pool with default settings."""
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   # A restarted stage is found within seconds, not after gRPC's default
                   # reconnect backoff (up to two minutes).
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        channels = {stage: (address, security.channel(address, options))
                    for stage, address in (("generator", generator), ("judge", judge),
                                           ("exporter", exporter))}
        metadata = auth_metadata(auth_token)
        trainers = trainer if isinstance(trainer, TrainerPool) else \
            TrainerPool(trainer, metadata=metadata, security=security)
        return cls(generator_pb2_grpc.GeneratorServiceStub(channels["generator"][1]),
                   judge_pb2_grpc.JudgeServiceStub(channels["judge"][1]),
                   trainers,
                   exporter_pb2_grpc.ExporterServiceStub(channels["exporter"][1]),
                   channels, idle_seconds, metadata, connect_seconds, attempts)

    async def ready(self, *stages: str) -> None:
        """Waits until each stage's channel is connected, at most `connect_seconds` in all."""
        try:
            async with asyncio.timeout(self.connect_seconds):
                for stage in stages:
                    await self.channels[stage][1].channel_ready()
        except TimeoutError:
            down = [f"{s} at {self.channels[s][0]}" for s in stages
                    if self.channels[s][1].get_state() != grpc.ChannelConnectivity.READY]
            raise errors.Unavailable(f"{', '.join(down) or ' and '.join(stages)}: not "
                                     f"reachable for {self.connect_seconds:.0f}s") from None

    async def trainer_status(self) -> trainer_pb2.GetTrainerStatusResponse | None:
        """The best trainer replica's capacity and memory, or None when none answers (the
        trainer re-checks itself)."""
        return await self.trainers.status()

    async def close(self) -> None:
        await self.trainers.close()
        for _address, channel in self.channels.values():
            await channel.close()


def stream_lost(exc: errors.DistillError) -> bool:
    """Whether a stage's stream broke in transport (the stage went away) rather than ending
    with a status its servicer sent: every status our services send carries the request id in
    its trailing metadata; a connection that broke has none."""
    rpc = exc.__context__  # stage_error() keeps the RPC error there
    if not isinstance(rpc, grpc.aio.AioRpcError):
        return False
    if rpc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return False
    return not any(key == REQUEST_ID_KEY for key, _ in rpc.trailing_metadata() or ())


async def again_if_lost(clients: StageClients, stage: str, run: Callable[[], Awaitable[T]]) -> T:
    """`run()`, run again while its stream is lost in transport (at most `clients.attempts`
    times in all)."""
    attempt = 1
    while True:
        try:
            return await run()
        except errors.DistillError as exc:
            if attempt >= clients.attempts or not stream_lost(exc):
                raise
            attempt += 1
            log.warning("stage stream lost; running it again",
                        extra={"stage": stage, "reason": str(exc), "attempt": attempt})


@dataclass(frozen=True)
class CurationResult:
    candidates: common_pb2.ArtifactRef
    curated: common_pb2.ArtifactRef
    statistics: judge_pb2.JudgeStatistics  # its usage: every judged group's first delivery


async def generate_and_judge(
    clients: StageClients,
    generate: generator_pb2.GenerateRequest,
    judge_config: judge_pb2.JudgeConfig,
    on_generate: Callable[[generator_pb2.GenerateProgress], Awaitable[None]],
    on_generated: Callable[[common_pb2.CandidateGroup, Spend], Awaitable[None]],
    on_judged: Callable[[judge_pb2.JudgedGroup, Spend], Awaitable[None]],
) -> CurationResult:
    """Pipes the generator's candidate groups straight into the judge as they arrive; both
    run again if either stream is lost. `on_generated` and `on_judged` see each prompt's group
    once, with what its model calls cost the job (`stage_runs.py`); `on_generate` sees
    progress."""
    runs, judge_runs = GeneratorRuns(), JudgeRuns()
    judge_spend = Spend()

    async def group(event: common_pb2.CandidateGroup) -> None:
        if (spend := runs.first(event)) is not None:
            await on_generated(event, spend)

    async def judged_group(event: judge_pb2.JudgedGroup) -> None:
        nonlocal judge_spend
        if (spend := judge_runs.first(event)) is not None:
            judge_spend += spend
            await on_judged(event, spend)

    result = await again_if_lost(clients, "generator and judge", lambda: _generate_and_judge(
        clients, runs.next_run(generate), judge_runs.next_run(judge_config), on_generate, group,
        judged_group))
    result.statistics.usage.CopyFrom(judge_spend.to_proto())
    return result


async def _generate_and_judge(
    clients: StageClients,
    generate: generator_pb2.GenerateRequest,
    judge_config: judge_pb2.JudgeConfig,
    on_generate: Callable[[generator_pb2.GenerateProgress], Awaitable[None]],
    on_group: Callable[[common_pb2.CandidateGroup], Awaitable[None]],
    on_judged: Callable[[judge_pb2.JudgedGroup], Awaitable[None]],
) -> CurationResult:
    await clients.ready("generator", "judge")
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
            await on_group(event.group)
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

    async def run(stream: Callable[[], Awaitable[None]], emit: Emit) -> None:
        await stream()

    # Each stream handles its own events; this waits for both, or for the first error (and
    # then stops the other).
    both = completions((run_generator, run_judge), run, limit=2)
    try:
        async with contextlib.aclosing(both):
            async for _ in both:
                pass
    finally:
        judge_call.cancel()
    if "generate" not in summary or "judge" not in summary:
        raise errors.Unavailable("generation or judging ended without a summary")
    gen: generator_pb2.GenerateSummary = summary["generate"]  # type: ignore[assignment]
    judge_summary: judge_pb2.JudgeSummary = summary["judge"]  # type: ignore[assignment]
    return CurationResult(gen.candidates, judge_summary.curated, judge_summary.statistics)


async def generate(clients: StageClients, request: generator_pb2.GenerateRequest,
                   on_progress: Callable[[generator_pb2.GenerateProgress], Awaitable[None]]
                   ) -> tuple[list[common_pb2.CandidateGroup], Spend]:
    """All candidate groups of one generation, in the order they finished, and what their
    calls cost the job (run again if its stream is lost: `stage_runs.py`)."""
    runs = GeneratorRuns()
    groups: list[common_pb2.CandidateGroup] = []
    spend = Spend()

    async def handle(event: generator_pb2.GenerateResponse) -> None:
        nonlocal spend
        if event.HasField("group"):
            if (paid := runs.first(event.group)) is not None:
                groups.append(event.group)
                spend += paid
        else:
            await on_progress(event.progress)

    async def once() -> generator_pb2.GenerateSummary:
        run = runs.next_run(request)
        return await _until_final(clients, "generator", lambda: clients.generator.Generate(
            run, metadata=clients.metadata), "summary", handle)

    await again_if_lost(clients, "generator", once)
    return groups, spend


async def judge(clients: StageClients, config: judge_pb2.JudgeConfig,
                groups: list[common_pb2.CandidateGroup],
                on_judged: Callable[[judge_pb2.JudgedGroup, Spend], Awaitable[None]]
                ) -> judge_pb2.JudgeSummary:
    """Scores a fixed set of groups in one Judge stream (run again if it is lost). `on_judged`
    sees each group once, with what its judge calls cost the job (`stage_runs.py`)."""
    runs = JudgeRuns()

    async def requests(run: judge_pb2.JudgeConfig):
        yield judge_pb2.JudgeRequest(config=run)
        for group in groups:
            yield judge_pb2.JudgeRequest(group=group)

    async def first_time(event: judge_pb2.JudgeResponse) -> None:
        if (spend := runs.first(event.group)) is not None:
            await on_judged(event.group, spend)

    async def once() -> judge_pb2.JudgeSummary:
        run = runs.next_run(config)
        return await _until_final(
            clients, "judge",
            lambda: clients.judge.Judge(requests(run), metadata=clients.metadata),
            "summary", first_time)

    return await again_if_lost(clients, "judge", once)


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
    """The export's manifest (run again if its stream is lost)."""

    async def once() -> exporter_pb2.ExportManifest:
        return await _until_final(
            clients, "exporter",
            lambda: clients.exporter.Export(request, metadata=clients.metadata),
            "manifest", lambda event: on_progress(event.progress))

    return await again_if_lost(clients, "exporter", once)
