"""The gateway's trainer pool with fake replicas: FIFO queue, capacity, busy and lost replicas,
DNS discovery. Plus stages.train against in-process gRPC trainers (busy refusal, lost stream)."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from distill.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import errors
from services.common.server import Service, start
from services.common.settings import ServiceSettings
from services.gateway import stages
from services.gateway.trainer_pool import (
    ReplicaBusy,
    ReplicaLost,
    TrainerPool,
    parse_targets,
    resolve,
)
from tests.fixtures.ports import held_port
from tests.fixtures.waits import async_wait_for

INTERVAL = 0.05


class FakeReplica:
    def __init__(self, address: str, capacity: int = 1, memory_gb: float = 8.0) -> None:
        self.address = address
        self.capacity = capacity
        self.memory_gb = memory_gb
        self.up = True
        self.active: list[str] = []
        self.peak = 0
        self.closed = False
        self.status_calls = 0

    async def status(self, timeout: float) -> trainer_pb2.GetTrainerStatusResponse:
        self.status_calls += 1
        if not self.up:
            raise ConnectionRefusedError(f"{self.address} is down")
        return trainer_pb2.GetTrainerStatusResponse(
            capacity=self.capacity, active_job_ids=self.active, memory_gb=self.memory_gb)

    async def close(self) -> None:
        self.closed = True


class Cluster:
    """Fake replicas behind a fake DNS: `names` maps a target to the addresses it resolves to."""

    def __init__(self, *replicas: FakeReplica) -> None:
        self.replicas = {r.address: r for r in replicas}
        self.names: dict[str, list[str] | None] = {}
        self.resolved = 0

    async def resolve(self, target: str) -> list[str]:
        self.resolved += 1
        if target in self.names:
            found = self.names[target]
            if found is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return found
        return [target]

    def connect(self, address: str) -> FakeReplica:
        return self.replicas[address]

    def pool(self, targets, **kw) -> TrainerPool:
        return TrainerPool(targets, connect=self.connect, resolver=self.resolve,
                           interval=INTERVAL, status_timeout=1.0, **kw)


class Trainings:
    """Attempts that hold their replica until the test lets them finish; records placements."""

    def __init__(self) -> None:
        self.placements: list[tuple[str, str]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.script: dict[str, list[type[Exception]]] = {}  # per job: raise these first

    def attempt(self, job: str):
        async def run(replica: FakeReplica) -> str:
            self.placements.append((job, replica.address))
            if self.script.get(job):
                error = self.script[job].pop(0)
                if error is ReplicaLost:
                    replica.up = False  # killed: it answers no status check either
                raise error(f"{replica.address} says no")
            assert len(replica.active) < replica.capacity, "over capacity"
            replica.active.append(job)
            replica.peak = max(replica.peak, len(replica.active))
            try:
                await self.gates.setdefault(job, asyncio.Event()).wait()
            finally:
                replica.active.remove(job)
            return replica.address
        return run

    def finish(self, job: str) -> None:
        self.gates.setdefault(job, asyncio.Event()).set()


async def passes_go_by(pool: TrainerPool, cluster: Cluster, count: int = 5) -> None:
    """For negative checks: the scheduler makes `count` more passes (each re-resolves every
    target), however long a loaded machine takes for them."""
    start = cluster.resolved
    await async_wait_for(lambda: cluster.resolved >= start + count * len(pool.targets),
                         f"{count} scheduling passes")


async def test_fifo_queue_never_exceeds_capacity():
    cluster = Cluster(FakeReplica("a:1"), FakeReplica("b:1"))
    pool = cluster.pool("a:1,b:1")
    t = Trainings()
    tasks = {}
    for job in ("j1", "j2", "j3", "j4"):
        tasks[job] = asyncio.create_task(pool.run(job, t.attempt(job), wait_seconds=120))
        await asyncio.sleep(0)  # its first step takes its place in the queue: submission order
    await async_wait_for(lambda: len(t.placements) == 2, "len(t.placements) == 2")
    assert {j for j, _ in t.placements} == {"j1", "j2"}
    assert {r for _, r in t.placements} == {"a:1", "b:1"}  # one each
    assert pool.queue_depth() == 2
    snap = pool.snapshot()
    assert (snap.replicas, snap.replicas_busy, snap.trainings_running) == (2, 2, 2)
    await passes_go_by(pool, cluster)  # nothing more is placed
    assert len(t.placements) == 2
    first_replica = dict(t.placements)["j1"]
    t.finish("j1")
    assert await tasks["j1"] == first_replica
    await async_wait_for(lambda: len(t.placements) == 3, "len(t.placements) == 3")
    assert t.placements[2] == ("j3", first_replica)  # the oldest waiting task, on the freed slot
    assert pool.queue_depth() == 1
    for job in ("j2", "j3", "j4"):
        t.finish(job)
    await asyncio.gather(*tasks.values())
    assert [j for j, _ in t.placements] == ["j1", "j2", "j3", "j4"]
    assert max(r.peak for r in cluster.replicas.values()) == 1
    assert pool.queue_depth() == 0 and pool.snapshot().trainings_running == 0
    await pool.close()
    assert all(r.closed for r in cluster.replicas.values())


async def test_capacity_two_takes_two_and_counts_what_the_replica_reports():
    big = FakeReplica("big:1", capacity=2)
    big.active = ["someone-else"]  # a training the pool did not place (another gateway)
    cluster = Cluster(big)
    pool = cluster.pool("big:1")
    t = Trainings()
    tasks = [asyncio.create_task(pool.run(j, t.attempt(j), wait_seconds=120)) for j in "xy"]
    await async_wait_for(lambda: len(t.placements) == 1, "len(t.placements) == 1")
    await passes_go_by(pool, cluster)
    assert len(t.placements) == 1 and pool.queue_depth() == 1
    big.active.remove("someone-else")
    await async_wait_for(lambda: len(t.placements) == 2, "len(t.placements) == 2")
    assert big.peak == 2
    t.finish("x"), t.finish("y")
    await asyncio.gather(*tasks)
    await pool.close()


async def test_busy_replica_sends_the_task_back_to_its_place_in_the_queue():
    cluster = Cluster(FakeReplica("a:1"))
    pool = cluster.pool("a:1")
    t = Trainings()
    t.script["j1"] = [ReplicaBusy]  # the status said free, the replica says busy
    seen: list[str] = []
    task = asyncio.create_task(pool.run("j1", t.attempt("j1"), wait_seconds=120,
                                        on_queue=seen.append))
    await async_wait_for(lambda: len(t.placements) == 2, "len(t.placements) == 2")
    t.finish("j1")
    assert await task == "a:1"
    assert pool.requeues["busy"] == 1
    assert seen[0] == "training on trainer a:1" and "was busy" in seen[1]
    await pool.close()


async def test_lost_replica_moves_the_task_to_another_replica():
    a, b = FakeReplica("a:1"), FakeReplica("b:1")
    cluster = Cluster(a, b)
    pool = cluster.pool("a:1,b:1")
    t = Trainings()
    keep_b = asyncio.create_task(pool.run("other", t.attempt("other"), wait_seconds=120))
    await async_wait_for(lambda: len(t.placements) == 1, "len(t.placements) == 1")
    busy_replica = t.placements[0][1]
    free_replica = "b:1" if busy_replica == "a:1" else "a:1"
    t.script["job"] = [ReplicaLost]
    moved = asyncio.create_task(pool.run("job", t.attempt("job"), wait_seconds=120))
    await async_wait_for(lambda: len(t.placements) == 2 and pool.queue_depth() == 1,
                         "the job lost and queued again")
    assert t.placements[1] == ("job", free_replica)  # and it was lost there
    await passes_go_by(pool, cluster)
    assert len(t.placements) == 2  # the other replica is still busy: the task waits
    assert pool.snapshot().replicas_unreachable == 1
    t.finish("other")
    await keep_b
    await async_wait_for(lambda: len(t.placements) == 3, "len(t.placements) == 3")
    assert t.placements[2] == ("job", busy_replica)  # resumed on the remaining replica
    t.finish("job")
    assert await moved == busy_replica
    assert pool.requeues["replica_lost"] == 1
    await pool.close()


async def test_a_job_still_running_on_a_lost_replica_waits_for_it_to_stop():
    a = FakeReplica("a:1", capacity=2)
    cluster = Cluster(a)
    pool = cluster.pool("a:1")
    a.active = ["job"]  # the stream broke, but the replica still trains the job
    t = Trainings()
    task = asyncio.create_task(pool.run("job", t.attempt("job"), wait_seconds=120))
    await passes_go_by(pool, cluster)
    assert t.placements == [] and pool.queue_depth() == 1  # a free slot, but not for this job
    a.active = []
    await async_wait_for(lambda: len(t.placements) == 1, "len(t.placements) == 1")
    t.finish("job")
    await task
    await pool.close()


async def test_too_many_lost_replicas_fail_the_job():
    cluster = Cluster(FakeReplica("a:1"))
    pool = cluster.pool("a:1", max_moves=1)
    calls = []

    async def attempt(replica):  # the replica restarts at once, and loses the stream again
        calls.append(replica.address)
        raise ReplicaLost("stream reset")

    with pytest.raises(errors.Unavailable, match="lost 2 replicas"):
        await pool.run("job", attempt, wait_seconds=120)
    assert calls == ["a:1", "a:1"]  # the only replica, so the same one again
    await pool.close()


async def test_waiting_too_long_is_resource_exhausted_and_leaves_the_queue():
    a = FakeReplica("a:1")
    a.active = ["forever"]
    pool = Cluster(a).pool("a:1")
    with pytest.raises(errors.ResourceExhausted, match="no replica had a free slot"):
        await pool.run("job", Trainings().attempt("job"), wait_seconds=0.3)
    assert pool.queue_depth() == 0
    await pool.close()


async def test_cancelled_while_waiting_leaves_the_queue():
    a = FakeReplica("a:1")
    a.active = ["forever"]
    pool = Cluster(a).pool("a:1")
    task = asyncio.create_task(pool.run("job", Trainings().attempt("job"), wait_seconds=120))
    await async_wait_for(lambda: pool.queue_depth() == 1, "pool.queue_depth() == 1")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.queue_depth() == 0
    await pool.close()


async def test_dns_name_is_one_replica_per_address_re_resolved_each_pass():
    replicas = {name: FakeReplica(f"10.0.0.{i}:50054") for i, name in enumerate("abc", 1)}
    cluster = Cluster(*replicas.values())
    cluster.names["trainer:50054"] = None  # scaled to zero: the name does not resolve
    pool = cluster.pool("trainer:50054")
    t = Trainings()
    tasks = [asyncio.create_task(pool.run(j, t.attempt(j), wait_seconds=120))
             for j in ("j1", "j2", "j3")]
    await async_wait_for(lambda: cluster.resolved >= 3, "cluster.resolved >= 3")
    assert t.placements == [] and pool.queue_depth() == 3  # waiting: what scales trainers up
    cluster.names["trainer:50054"] = ["10.0.0.1:50054", "10.0.0.2:50054"]  # two pods ready
    await async_wait_for(lambda: len(t.placements) == 2, "len(t.placements) == 2")
    assert {r for _, r in t.placements} == {"10.0.0.1:50054", "10.0.0.2:50054"}
    cluster.names["trainer:50054"] = ["10.0.0.1:50054", "10.0.0.2:50054", "10.0.0.3:50054"]
    await async_wait_for(lambda: len(t.placements) == 3, "len(t.placements) == 3")
    assert t.placements[2] == ("j3", "10.0.0.3:50054")
    # A pod gone from DNS takes no new task, and is dropped once its training ends.
    cluster.names["trainer:50054"] = ["10.0.0.1:50054", "10.0.0.2:50054"]
    tasks.append(asyncio.create_task(pool.run("j4", t.attempt("j4"), wait_seconds=120)))
    await async_wait_for(lambda: not pool.replicas["10.0.0.3:50054"].listed, "c unlisted")
    t.finish("j3")
    await async_wait_for(lambda: "10.0.0.3:50054" not in pool.replicas, "c dropped")
    assert replicas["c"].closed and len(t.placements) == 3 and pool.queue_depth() == 1
    t.finish("j1")
    await async_wait_for(lambda: len(t.placements) == 4, "len(t.placements) == 4")
    assert t.placements[3] == ("j4", dict(t.placements)["j1"])
    for job in ("j2", "j4"):
        t.finish(job)
    await asyncio.gather(*tasks)
    await pool.close()


async def test_idle_pool_keeps_checking_its_replicas():
    """Started with nothing queued, the pool still finds its replicas and notices one going
    down, so that the replica gauges are right between trainings."""
    up, flaky = FakeReplica("u:1"), FakeReplica("f:1")
    pool = Cluster(up, flaky).pool("u:1,f:1", idle_refresh=0.05)
    pool.start()
    await async_wait_for(lambda: pool.snapshot().replicas == 2, "pool.snapshot().replicas == 2")
    assert pool.snapshot().replicas_unreachable == 0 and pool.queue_depth() == 0
    flaky.up = False
    await async_wait_for(lambda: pool.snapshot().replicas_unreachable == 1, "flaky is down")
    calls = up.status_calls
    await async_wait_for(lambda: up.status_calls >= calls + 2, "checked every idle_refresh")
    flaky.up = True
    await async_wait_for(lambda: pool.snapshot().replicas_unreachable == 0, "flaky is back")
    await pool.close()


async def test_status_is_the_reachable_replica_with_most_memory():
    small, big, down = FakeReplica("s:1", memory_gb=8), FakeReplica("b:1", memory_gb=80), \
        FakeReplica("d:1", memory_gb=800)
    down.up = False
    pool = Cluster(small, big, down).pool("s:1,b:1,d:1")
    assert (await pool.status()).memory_gb == 80
    big.up = small.up = False
    assert await pool.status() is None
    await pool.close()


async def test_targets_and_resolution():
    assert parse_targets(" a:1, dns:///b.svc:2 ,") == ["a:1", "b.svc:2"]
    for bad in ("nohost", "h:port", ":1"):
        with pytest.raises(ValueError, match="host:port"):
            parse_targets(bad)
    with pytest.raises(ValueError, match="no trainer"):
        TrainerPool("")
    assert await resolve("10.1.2.3:50054") == ["10.1.2.3:50054"]
    assert await resolve("[::1]:50054") == ["[::1]:50054"]
    assert await resolve("localhost:50054") == ["127.0.0.1:50054"]  # one replica, not two


# --- stages.train over real gRPC -----------------------------------------------------------------

class FakeTrainer(trainer_pb2_grpc.TrainerServiceServicer):
    """Refuses when `busy`; otherwise streams a few steps, or hangs up after one when `die`."""

    def __init__(self, busy=False, die=False) -> None:
        self.busy, self.die, self.calls = busy, die, 0

    async def Train(self, request, context):  # noqa: N802
        self.calls += 1
        if self.busy:
            raise errors.ResourceExhausted("trainer at capacity")
        yield trainer_pb2.TrainResponse(started=trainer_pb2.TrainStarted(total_steps=2))
        if self.die:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        yield trainer_pb2.TrainResponse(step=trainer_pb2.TrainStep(step=2, total_steps=2))
        yield trainer_pb2.TrainResponse(finished=trainer_pb2.TrainFinished(steps=2))

    async def GetTrainerStatus(self, request, context):  # noqa: N802
        return trainer_pb2.GetTrainerStatusResponse(capacity=1)


async def _serve(servicer):
    settings = ServiceSettings(port=0, grace_seconds=0)
    return await start(settings, [Service.of(trainer_pb2, trainer_pb2_grpc, servicer)])


@pytest.mark.parametrize("first", ["busy", "die"])
async def test_train_goes_to_the_next_replica_when_one_is_busy_or_lost(first):
    bad, good = FakeTrainer(**{first: True}), FakeTrainer()
    servers = [await _serve(bad), await _serve(good)]
    # Both free: the first listed is tried first.
    pool = TrainerPool([f"127.0.0.1:{s.port}" for s in servers], interval=INTERVAL)
    clients = stages.StageClients.connect("127.0.0.1:9", "127.0.0.1:9", pool, "127.0.0.1:9",
                                          idle_seconds=5)
    events: list[str] = []

    async def on_event(event):
        events.append(event.WhichOneof("event"))

    finished = await asyncio.wait_for(stages.train(
        clients, trainer_pb2.TrainRequest(job_id="j"), on_event, wait_seconds=120), 120)
    assert finished.steps == 2 and (bad.calls, good.calls) == (1, 1)
    assert pool.requeues == {"busy" if first == "busy" else "replica_lost": 1}
    assert events[-1] == "finished"
    await clients.close()
    for server in servers:
        await server.stop()


async def test_train_fails_on_a_trainer_error_without_moving():
    class Broken(FakeTrainer):
        async def Train(self, request, context):  # noqa: N802
            self.calls += 1
            raise errors.InvalidArgument("lora.rank: must be > 0")
            yield  # pragma: no cover

    broken = Broken()
    server = await _serve(broken)
    clients = stages.StageClients.connect("127.0.0.1:9", "127.0.0.1:9",
                                          f"127.0.0.1:{server.port}", "127.0.0.1:9", 5)
    with pytest.raises(errors.InvalidArgument, match=r"lora\.rank"):
        await stages.train(clients, trainer_pb2.TrainRequest(job_id="j"),
                           lambda e: asyncio.sleep(0), wait_seconds=5)
    assert broken.calls == 1
    await clients.close()
    await server.stop()


async def test_a_replica_that_comes_up_late_answers_the_next_check():
    """Checks that failed while the trainer was starting must not leave its channel waiting out
    gRPC's reconnect backoff: the check after the trainer is up reaches it (the gateway starts
    before its trainers, and preflight asks for their memory at the first job)."""
    with held_port() as port:
        pool = TrainerPool(f"127.0.0.1:{port}", interval=INTERVAL)
        for _ in range(4):  # each failed connection attempt lengthens gRPC's backoff
            assert await pool.status() is None
            await asyncio.sleep(0.3)  # time for the backoff to grow: what the test is about
        server = await start(ServiceSettings(port=port, metrics_port=0, grace_seconds=0),
                             [Service.of(trainer_pb2, trainer_pb2_grpc, FakeTrainer())])
    try:
        status = await pool.status()
        assert status is not None and status.capacity == 1
    finally:
        await pool.close()
        await server.stop()
