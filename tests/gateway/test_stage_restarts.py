"""Stage calls ride through a stage restart: they wait for the stage to be reachable, run a
stream lost in transport again, and keep a status the stage sent as final. In-process gRPC
stages on loopback; a restart is the server stopped mid-stream and started again on its port."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from distill.v1 import common_pb2, generator_pb2, generator_pb2_grpc, judge_pb2, judge_pb2_grpc
from services.common import errors
from services.common.server import Service, start
from services.common.settings import ServiceSettings
from services.common.spend import Spend
from services.gateway import stages
from tests.fixtures.ports import held_port


class Generator(generator_pb2_grpc.GeneratorServiceServicer):
    """Streams one group per (prompt id, USD its teacher calls cost); after the first, hangs
    (until the test stops its server) or fails with `fail`; then a summary."""

    def __init__(self, groups: list[tuple[str, float]], *, hang: bool = False,
                 fail: Exception | None = None):
        self.groups, self.hang, self.fail, self.calls = groups, hang, fail, 0
        self.delivered = asyncio.Event()

    async def Generate(self, request, context):  # noqa: N802
        self.calls += 1
        for prompt_id, cost in self.groups:
            yield generator_pb2.GenerateResponse(group=common_pb2.CandidateGroup(
                prompt=common_pb2.Prompt(id=prompt_id), candidates=[common_pb2.Candidate(
                    prompt_id=prompt_id, usage=common_pb2.Usage(requests=1, cost_usd=cost))]))
            self.delivered.set()
            if self.fail is not None:
                raise self.fail
            if self.hang:
                await asyncio.sleep(60)
        yield generator_pb2.GenerateResponse(summary=generator_pb2.GenerateSummary(
            usage=common_pb2.Usage(requests=len(self.groups),
                                   cost_usd=sum(cost for _, cost in self.groups))))


class Judge(judge_pb2_grpc.JudgeServiceServicer):
    """One judged group per group sent, its judge calls costing `costs[prompt id]`; after the
    first, hangs if `hang` (until the test stops its server); then a summary."""

    def __init__(self, costs: dict[str, float], *, hang: bool = False):
        self.costs, self.hang, self.calls = costs, hang, 0
        self.delivered = asyncio.Event()

    async def Judge(self, request_iterator, context):  # noqa: N802
        self.calls += 1
        async for request in request_iterator:
            if not request.HasField("group"):
                continue
            prompt_id = request.group.prompt.id
            cost = self.costs[prompt_id]
            yield judge_pb2.JudgeResponse(group=judge_pb2.JudgedGroup(
                prompt_id=prompt_id, usage=common_pb2.Usage(
                    requests=1, cached_requests=0 if cost else 1, cost_usd=cost)))
            self.delivered.set()
            if self.hang:
                await asyncio.sleep(60)
        yield judge_pb2.JudgeResponse(summary=judge_pb2.JudgeSummary())


async def _serve(servicer, port: int):
    judge = isinstance(servicer, judge_pb2_grpc.JudgeServiceServicer)
    modules = (judge_pb2, judge_pb2_grpc) if judge else (generator_pb2, generator_pb2_grpc)
    return await start(ServiceSettings(port=port, metrics_port=0, grace_seconds=0),
                       [Service.of(*modules, servicer)])


def _clients(port: int, judge_port: int = 9, **kw) -> stages.StageClients:
    return stages.StageClients.connect(f"127.0.0.1:{port}", f"127.0.0.1:{judge_port}",
                                       "127.0.0.1:9", "127.0.0.1:9", idle_seconds=30, **kw)


async def _no_progress(progress) -> None:
    pass


async def _generate_across_a_restart(first, second):
    """stages.generate against `first`, whose server is stopped once it delivered a group (the
    stream breaks in transport) and, after a while down, replaced by `second` on the same port:
    the groups and spend stages.generate returns."""
    with held_port() as port:
        server = await _serve(first, port)
        clients = _clients(port, connect_seconds=120)
        try:
            running = asyncio.create_task(stages.generate(
                clients, generator_pb2.GenerateRequest(job_id="j"), _no_progress))
            await asyncio.wait_for(first.delivered.wait(), 120)
            await server.stop()
            await asyncio.sleep(0.5)  # down for a while: the retry waits for it
            server = await _serve(second, port)
            return await asyncio.wait_for(running, 120)
        finally:
            await clients.close()
            await server.stop()


async def test_a_generator_restarted_mid_stream_is_waited_for_and_run_again():
    # p1 is paid before the restart; run again, p1 comes from the cache (free) and p2 is paid.
    first = Generator([("p1", 0.5)], hang=True)
    second = Generator([("p1", 0.0), ("p2", 0.2)])
    groups, spend = await _generate_across_a_restart(first, second)
    assert [g.prompt.id for g in groups] == ["p1", "p2"]
    assert (first.calls, second.calls) == (1, 1)
    # What the lost attempt paid for stays counted, once: p1 at its first delivery.
    assert spend.cost_usd == pytest.approx(0.7) and spend.requests == 2


def _one_call(run_id: str, prompt_id: str, cost: float, cached: bool
              ) -> tuple[common_pb2.PaidCall, common_pb2.Usage]:
    """A prompt's one model call, paid for by `run_id`, and what its answer counts: the call's
    usage when it is made, one cached request when the cache answers it."""
    paid = common_pb2.PaidCall(run_id=run_id, prompt_id=prompt_id, call=f"key-{prompt_id}",
                               usage=common_pb2.Usage(requests=1, cost_usd=cost))
    return paid, common_pb2.Usage(requests=1, cached_requests=1) if cached else paid.usage


class PaysForMoreThanItDelivers(generator_pb2_grpc.GeneratorServiceServicer):
    """Its first run pays for p1 and p2 (0.5 and 0.2 USD) and delivers p1 only: p2 is on the
    way when the stream breaks. Later runs answer both from the cache, naming the first run."""

    def __init__(self):
        self.runs: list[str] = []
        self.delivered = asyncio.Event()

    async def Generate(self, request, context):  # noqa: N802
        self.runs.append(request.run_id)
        first = self.runs[0]
        cached = len(self.runs) > 1
        for prompt_id, cost in (("p1", 0.5), ("p2", 0.2)):
            paid, usage = _one_call(first, prompt_id, cost, cached)
            yield generator_pb2.GenerateResponse(group=common_pb2.CandidateGroup(
                prompt=common_pb2.Prompt(id=prompt_id), candidates=[common_pb2.Candidate(
                    prompt_id=prompt_id, usage=usage, cached=cached, paid=paid)]))
            if not cached:
                self.delivered.set()
                await asyncio.sleep(60)  # p2 is paid for; the stream breaks before it leaves
        yield generator_pb2.GenerateResponse(summary=generator_pb2.GenerateSummary())


async def test_a_call_paid_by_a_broken_run_whose_group_never_came_is_charged_once():
    generator = PaysForMoreThanItDelivers()
    groups, spend = await _generate_across_a_restart(generator, generator)
    assert [g.prompt.id for g in groups] == ["p1", "p2"]
    assert len(set(generator.runs)) == 2 and all(generator.runs)
    # p1 at its first delivery, p2 at its first (cached) delivery: each call once.
    assert spend.cost_usd == pytest.approx(0.7)
    assert (spend.requests, spend.cached_requests) == (2, 0)


async def _judge_across_a_restart(first, second):
    """stages.judge of p1 and p2 against `first`, whose server is stopped once it delivered a
    judged group (the stream breaks in transport) and replaced by `second` on the same port: the
    judged groups and what each charged, in the order on_judged saw them."""
    with held_port() as port:
        server = await _serve(first, port)
        clients = _clients(9, judge_port=port, connect_seconds=120)
        seen: list[tuple[judge_pb2.JudgedGroup, Spend]] = []

        async def on_judged(group: judge_pb2.JudgedGroup, spend: Spend) -> None:
            seen.append((group, spend))

        groups = [common_pb2.CandidateGroup(prompt=common_pb2.Prompt(id=p))
                  for p in ("p1", "p2")]
        try:
            running = asyncio.create_task(
                stages.judge(clients, judge_pb2.JudgeConfig(), groups, on_judged))
            await asyncio.wait_for(first.delivered.wait(), 120)
            await server.stop()
            server = await _serve(second, port)
            await asyncio.wait_for(running, 120)
            return seen
        finally:
            await clients.close()
            await server.stop()


async def test_a_judge_stream_run_again_reports_each_group_once_with_what_it_paid():
    # p1 is judged (paid) before the restart; run again, the judge sends p1 again from its
    # cache (free), then p2.
    first, second = Judge({"p1": 0.3}, hang=True), Judge({"p1": 0.0, "p2": 0.1})
    seen = await _judge_across_a_restart(first, second)
    assert (first.calls, second.calls) == (1, 1)
    assert [g.prompt_id for g, _ in seen] == ["p1", "p2"]
    assert sum(spend.requests for _, spend in seen) == 2
    assert sum(spend.cost_usd for _, spend in seen) == pytest.approx(0.4)


class JudgesMoreThanItDelivers(judge_pb2_grpc.JudgeServiceServicer):
    """Its first run pays for judging p1 and p2 (0.3 and 0.1 USD) and delivers p1 only: p2's
    verdict is on the way when the stream breaks. Later runs answer both from the cache, naming
    the first run and the prompt each call was made for."""

    def __init__(self):
        self.runs: list[str] = []
        self.delivered = asyncio.Event()

    async def Judge(self, request_iterator, context):  # noqa: N802
        requests = aiter(request_iterator)
        self.runs.append((await anext(requests)).config.run_id)
        cached = len(self.runs) > 1
        for prompt_id, cost in (("p1", 0.3), ("p2", 0.1)):
            await anext(requests)  # the group
            paid, usage = _one_call(self.runs[0], prompt_id, cost, cached)
            group = judge_pb2.JudgedGroup(prompt_id=prompt_id, usage=usage)
            if cached:
                group.cached_calls.append(paid)
            yield judge_pb2.JudgeResponse(group=group)
            if not cached:
                self.delivered.set()
                await asyncio.sleep(60)  # p2 is paid for; the stream breaks before it leaves
        yield judge_pb2.JudgeResponse(summary=judge_pb2.JudgeSummary())


async def test_a_judge_call_paid_by_a_broken_run_whose_group_never_came_is_charged_once():
    judge = JudgesMoreThanItDelivers()
    seen = await _judge_across_a_restart(judge, judge)
    assert len(set(judge.runs)) == 2 and all(judge.runs)
    assert [g.prompt_id for g, _ in seen] == ["p1", "p2"]
    total = Spend.total(spend for _, spend in seen)
    assert total.cost_usd == pytest.approx(0.4)
    assert (total.requests, total.cached_requests) == (2, 0)


async def test_a_status_the_stage_sent_is_final():
    generator = Generator([("p1", 0.1)],
                          fail=errors.Unavailable("teacher openai/x: HTTP 503 after 5 tries"))
    server = await _serve(generator, 0)
    clients = _clients(server.port)
    try:
        with pytest.raises(errors.Unavailable, match="HTTP 503 after 5 tries"):
            await stages.generate(clients, generator_pb2.GenerateRequest(), _no_progress)
        assert generator.calls == 1
    finally:
        await clients.close()
        await server.stop()


async def test_an_unreachable_stage_fails_after_the_connect_timeout_naming_it():
    with held_port() as port:
        clients = _clients(port, connect_seconds=0.5)
        try:
            with pytest.raises(errors.Unavailable,
                               match=rf"generator at 127\.0\.0\.1:{port}: not reachable for 0s"):
                await stages.generate(clients, generator_pb2.GenerateRequest(), _no_progress)
        finally:
            await clients.close()


def _rpc_error(code: grpc.StatusCode, trailing=()) -> errors.DistillError:
    rpc = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), "x")
    try:
        raise rpc
    except grpc.aio.AioRpcError as exc:
        try:
            raise stages.stage_error("generator", exc) from None
        except errors.DistillError as mapped:
            return mapped


@pytest.mark.parametrize("code, trailing, lost", [
    (grpc.StatusCode.UNAVAILABLE, (), True),
    (grpc.StatusCode.CANCELLED, (), True),
    (grpc.StatusCode.UNAVAILABLE, (("x-request-id", "abc"),), False),  # the servicer sent it
    (grpc.StatusCode.INVALID_ARGUMENT, (), False),
    (grpc.StatusCode.DEADLINE_EXCEEDED, (), False),
])
def test_which_failures_are_a_lost_stream(code, trailing, lost):
    assert stages.stream_lost(_rpc_error(code, trailing)) is lost


async def test_a_stream_lost_every_time_fails_after_the_attempts():
    clients = _clients(9, attempts=3)
    runs = []

    async def run():
        runs.append(1)
        raise _rpc_error(grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(errors.Unavailable):
        await stages.again_if_lost(clients, "generator", run)
    assert len(runs) == 3
    await clients.close()
