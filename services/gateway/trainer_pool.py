"""Trainer replicas and the gateway-wide FIFO queue of training tasks.

Replicas come from the configured targets (`host:port`, comma-separated). A target whose host is a
name is resolved through DNS at every scheduling pass, and every address it resolves to is one
replica: a Kubernetes headless Service lists one A record per ready trainer pod, so replicas that
scale up, move or go away are picked up on the next pass. A pass runs whenever a task waits and
something changed (a task queued, a training ended) or `interval` seconds went by; it asks every
replica `GetTrainerStatus` (capacity, active jobs) and hands the oldest waiting tasks to the
replicas with free slots, never more than a replica's capacity (what the pool placed there plus
what the replica says it runs). With nothing queued, the replicas are checked every
`idle_refresh` seconds, so the replica metrics stay current between trainings.

An attempt that the chosen replica refuses as busy (`ReplicaBusy`, from RESOURCE_EXHAUSTED) goes
back in the queue in its old place; one whose replica is lost mid-training (`ReplicaLost`: the
stream broke, the connection reset, the idle timeout passed) also goes back, and the next replica
resumes it from the job's last checkpoint in the artifact store (`TrainRequest.resume`). Plain
asyncio: tests drive it with fake replicas, without gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import itertools
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc

from distill.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import errors
from services.common.channels import PLAINTEXT, ChannelSecurity
from services.common.metrics import SchedulerSnapshot

log = logging.getLogger("distill.gateway.trainers")
T = TypeVar("T")


class ReplicaBusy(Exception):
    """The replica refused the training at once (RESOURCE_EXHAUSTED): try later or elsewhere."""


class ReplicaLost(Exception):
    """The replica went away mid-training: another one resumes from the last checkpoint."""


class ReplicaClient(Protocol):
    """What the pool needs of one replica's connection (GrpcReplica, or a fake in tests)."""

    address: str

    async def status(self, timeout: float) -> trainer_pb2.GetTrainerStatusResponse: ...

    async def close(self) -> None: ...


class GrpcReplica:
    """One trainer replica over its own channel (one channel per resolved address)."""

    def __init__(self, address: str, metadata: tuple[tuple[str, str], ...] = (),
                 options: Sequence[tuple[str, Any]] = (),
                 security: ChannelSecurity = PLAINTEXT) -> None:
        self.address = address
        self.metadata = metadata
        self.channel = security.channel(address, options)
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)

    async def status(self, timeout: float) -> trainer_pb2.GetTrainerStatusResponse:
        return await self.stub.GetTrainerStatus(trainer_pb2.GetTrainerStatusRequest(),
                                                timeout=timeout, metadata=self.metadata)

    def train(self, request: trainer_pb2.TrainRequest):
        return self.stub.Train(request, metadata=self.metadata)

    async def close(self) -> None:
        await self.channel.close()


def parse_targets(targets: str | Sequence[str]) -> list[str]:
    """`host:port` entries from a comma-separated string or a list; empty ones dropped."""
    items = targets.split(",") if isinstance(targets, str) else list(targets)
    out = []
    for item in (t.strip().removeprefix("dns:///") for t in items):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"trainer address {item!r}: expected host:port")
        out.append(item)
    return out


async def resolve(target: str) -> list[str]:
    """The replica addresses behind `host:port`: the host itself when it is an IP address, else
    every address DNS gives for it (IPv4 when there are any, so `localhost` is one replica)."""
    host, _, port = target.rpartition(":")
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return [target]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(bare, int(port),
                                                         type=socket.SOCK_STREAM)
    v4 = sorted({info[4][0] for info in infos if info[0] == socket.AF_INET})
    v6 = sorted({info[4][0] for info in infos if info[0] == socket.AF_INET6})
    return [f"{ip}:{port}" for ip in v4] if v4 else [f"[{ip}]:{port}" for ip in v6]


@dataclass(eq=False)
class Replica:
    client: ReplicaClient
    capacity: int = 0  # 0 until the replica answered a status check
    reachable: bool = False
    listed: bool = True  # still among the resolved addresses
    reported: frozenset[str] = frozenset()  # active_job_ids at the last status check
    placed: set[str] = field(default_factory=set)  # jobs this pool runs there now
    skip_until: float = 0.0  # after a busy refusal: left alone for one interval
    last_status: trainer_pb2.GetTrainerStatusResponse | None = None

    @property
    def address(self) -> str:
        return self.client.address

    def running(self) -> int:
        return len(self.reported | self.placed)

    def free(self, now: float) -> int:
        if not (self.reachable and self.listed) or now < self.skip_until:
            return 0
        return max(self.capacity - self.running(), 0)


@dataclass(eq=False)
class _Ticket:
    job_id: str
    seq: int  # its place in the queue, kept when it goes back after a busy or lost replica
    future: asyncio.Future
    avoid: frozenset[str] = frozenset()  # replicas lost while training it: others first
    on_queue: Callable[[str], None] | None = None


class TrainerPool:
    """Places training tasks on trainer replicas with free capacity, oldest task first."""

    def __init__(self, targets: str | Sequence[str], *,
                 connect: Callable[[str], Any] | None = None,
                 resolver: Callable[[str], Awaitable[list[str]]] = resolve,
                 status_timeout: float = 10.0, interval: float = 2.0, max_moves: int = 3,
                 idle_refresh: float = 15.0,
                 metadata: tuple[tuple[str, str], ...] = (),
                 security: ChannelSecurity = PLAINTEXT) -> None:
        self.targets = parse_targets(targets)
        if not self.targets:
            raise ValueError("no trainer address configured")
        self._connect = connect or (lambda address: GrpcReplica(address, metadata,
                                                                security=security))
        self._resolve = resolver
        self.status_timeout = status_timeout
        self.interval = interval
        self.max_moves = max_moves
        # With nothing queued, the replicas are still checked this often, so that the replica
        # gauges (how many, how many unreachable) stay current between trainings.
        self.idle_refresh = idle_refresh
        self.replicas: dict[str, Replica] = {}
        self._waiting: list[_Ticket] = []
        self._seq = itertools.count()
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None
        self._refresh_lock: asyncio.Lock | None = None
        self._resolve_errors: dict[str, str] = {}
        self.requeues: Counter[str] = Counter()

    # -- what callers use ---------------------------------------------------------------------

    async def run(self, job_id: str, attempt: Callable[[Any], Awaitable[T]], *,
                  wait_seconds: float, on_queue: Callable[[str], None] | None = None) -> T:
        """Runs `attempt(replica_client)` for the job on a replica with a free slot, waiting in
        the FIFO queue for one. ReplicaBusy puts the task back in its place; ReplicaLost puts it
        back too (at most `max_moves` times) so that another replica resumes it. Raises
        ResourceExhausted after `wait_seconds` in the queue without a free replica.

        `on_queue(message)` hears where the task is ("training on ...", "waiting ..."), in the
        same event-loop step as the queue changes (so the job row and the queue-depth metric
        agree)."""
        on_queue = on_queue or (lambda message: None)
        seq = next(self._seq)
        lost: set[str] = set()
        moves = 0
        deadline = time.monotonic() + wait_seconds
        while True:
            replica = await self._place(job_id, seq, deadline, wait_seconds, frozenset(lost),
                                        on_queue)
            try:
                return await attempt(replica.client)
            except ReplicaBusy as exc:
                replica.skip_until = time.monotonic() + self.interval
                self.requeues["busy"] += 1
                log.info("trainer busy; task back in the queue",
                         extra={"job_id": job_id, "replica": replica.address, "reason": str(exc)})
                on_queue(f"waiting for a trainer ({replica.address} was busy)")
            except ReplicaLost as exc:
                moves += 1
                lost.add(replica.address)
                replica.reachable = False  # until it answers a status check again
                self.requeues["replica_lost"] += 1
                log.warning("trainer lost mid-training; task back in the queue",
                            extra={"job_id": job_id, "replica": replica.address,
                                   "reason": str(exc), "moves": moves})
                if moves > self.max_moves:
                    raise errors.Unavailable(
                        f"trainer: lost {moves} replicas while training; last: {exc}") from None
                deadline = time.monotonic() + wait_seconds  # a fresh wait for the resumption
                on_queue(f"waiting for a trainer to resume from the last checkpoint "
                         f"({replica.address} was lost)")
            finally:
                replica.placed.discard(job_id)
                self._forget_unlisted(replica)
                self._wake()

    async def status(self) -> trainer_pb2.GetTrainerStatusResponse | None:
        """The status of the reachable replica with the most memory (what preflight checks a
        student against), or None when none answers."""
        await self._refresh()
        answered = [r.last_status for r in self.replicas.values()
                    if r.reachable and r.listed and r.last_status is not None]
        return max(answered, key=lambda s: s.memory_gb, default=None)

    def queue_depth(self) -> int:
        return len(self._waiting)

    def snapshot(self) -> SchedulerSnapshot:
        """For the metrics endpoint, read from another thread: only copies made in one C call
        (list(), len(), set union), so no lock is needed against the event loop's changes."""
        replicas = [r for r in list(self.replicas.values()) if r.listed]
        reachable = [r for r in replicas if r.reachable]
        return SchedulerSnapshot(
            queue_depth=len(self._waiting),
            replicas=len(replicas),
            replicas_busy=sum(1 for r in reachable if r.capacity and r.running() >= r.capacity),
            replicas_unreachable=len(replicas) - len(reachable),
            trainings_running=sum(len(r.placed) for r in list(self.replicas.values())),
            requeues=dict(self.requeues),
        )

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        for replica in list(self.replicas.values()):
            await replica.client.close()
        self.replicas.clear()

    # -- the queue ----------------------------------------------------------------------------

    async def _place(self, job_id: str, seq: int, deadline: float, wait_seconds: float,
                     avoid: frozenset[str], on_queue: Callable[[str], None]) -> Replica:
        ticket = _Ticket(job_id, seq, asyncio.get_running_loop().create_future(), avoid,
                         on_queue)
        index = next((i for i, t in enumerate(self._waiting) if t.seq > seq), len(self._waiting))
        self._waiting.insert(index, ticket)
        self._start_dispatcher()
        self._wake()
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                return await asyncio.shield(ticket.future)
        except TimeoutError:
            if ticket.future.done():
                return ticket.future.result()  # placed at the last moment
            raise errors.ResourceExhausted(
                f"trainer: no replica had a free slot for {wait_seconds:.0f}s "
                f"(trainer_wait_seconds); {len(self.replicas)} replica(s) known") from None
        except asyncio.CancelledError:
            if ticket.future.done():  # placed, but the job was cancelled meanwhile
                ticket.future.result().placed.discard(job_id)
                self._wake()
            raise
        finally:
            if ticket in self._waiting:
                self._waiting.remove(ticket)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def start(self) -> None:
        """Starts checking the replicas now, not at the first training (call inside the loop)."""
        self._start_dispatcher()

    def _start_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._wakeup = asyncio.Event()
            # A context of its own: not the request id of the RPC that happened to start it.
            self._dispatcher = asyncio.create_task(self._dispatch(), name="trainer-dispatcher",
                                                   context=contextvars.Context())

    async def _dispatch(self) -> None:
        assert self._wakeup is not None
        next_check = 0.0  # with nothing queued, still check the replicas now and then
        while True:
            if not self._waiting:
                if time.monotonic() >= next_check:
                    try:
                        await self._refresh()
                    except Exception:
                        log.exception("trainer replica check failed")
                    next_check = time.monotonic() + self.idle_refresh
                    continue  # a task may have arrived meanwhile
                self._wakeup.clear()
                await self._wait_for_wakeup(next_check - time.monotonic())
                continue
            self._wakeup.clear()
            try:
                await self._pass()
            except Exception:
                log.exception("trainer scheduling pass failed")
            next_check = time.monotonic() + self.idle_refresh  # the pass checked them
            if self._waiting:
                # Something must change first: a training ends, a task arrives, time passes.
                await self._wait_for_wakeup(self.interval)

    async def _wait_for_wakeup(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that arrives
        # as the event is set, and close() would then wait for the dispatcher forever.
        assert self._wakeup is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0)):
                await self._wakeup.wait()

    async def _pass(self) -> None:
        """One scheduling pass: re-resolve, check every replica, place the oldest tasks."""
        await self._refresh()
        now = time.monotonic()
        for ticket in list(self._waiting):
            if ticket.future.done():
                continue
            candidates = [r for r in self.replicas.values()
                          if r.free(now) > 0 and ticket.job_id not in r.reported]
            if not candidates:
                continue  # the job may still be running where it was lost: wait for it to stop
            best = max(candidates, key=lambda r: (r.address not in ticket.avoid, r.free(now),
                                                  -len(r.placed)))
            best.placed.add(ticket.job_id)
            self._waiting.remove(ticket)
            ticket.future.set_result(best)
            if ticket.on_queue is not None:
                try:
                    ticket.on_queue(f"training on trainer {best.address}")
                except Exception:
                    log.exception("on_queue failed", extra={"job_id": ticket.job_id})
            log.info("training placed", extra={"job_id": ticket.job_id,
                                               "replica": best.address,
                                               "queue_depth": len(self._waiting)})

    # -- replicas -----------------------------------------------------------------------------

    async def _refresh(self) -> None:
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            addresses = await self._discover()
            for address in addresses:
                if address not in self.replicas:
                    self.replicas[address] = Replica(self._connect(address))
                    log.info("trainer replica found", extra={"replica": address})
                self.replicas[address].listed = True
            for address, replica in list(self.replicas.items()):
                if address not in addresses and replica.listed:
                    replica.listed = False
                    log.info("trainer replica gone from discovery", extra={"replica": address})
                    self._forget_unlisted(replica)
            await asyncio.gather(*(self._probe(r) for r in list(self.replicas.values())
                                   if r.listed))

    async def _discover(self) -> list[str]:
        found: list[str] = []
        for target in self.targets:
            try:
                addresses = await self._resolve(target)
            except (OSError, UnicodeError) as exc:
                # NXDOMAIN is normal for a headless Service scaled to zero: no replica now.
                if self._resolve_errors.get(target) != str(exc):
                    log.warning("trainer address does not resolve",
                                extra={"target": target, "reason": str(exc)})
                self._resolve_errors[target] = str(exc)
                continue
            self._resolve_errors.pop(target, None)
            found.extend(a for a in addresses if a not in found)
        return found

    async def _probe(self, replica: Replica) -> None:
        try:
            status = await replica.client.status(self.status_timeout)
        except (grpc.aio.AioRpcError, OSError, TimeoutError) as exc:
            if replica.reachable:
                log.warning("trainer replica unreachable", extra={
                    "replica": replica.address,
                    "reason": exc.code().name if isinstance(exc, grpc.aio.AioRpcError)
                    else str(exc)})
            replica.reachable = False
            if not replica.placed:
                await self._reconnect(replica)
            return
        if not replica.reachable:
            log.info("trainer replica ready", extra={"replica": replica.address,
                                                     "capacity": status.capacity})
        replica.reachable = True
        replica.capacity = status.capacity
        replica.reported = frozenset(status.active_job_ids)
        replica.last_status = status

    async def _reconnect(self, replica: Replica) -> None:
        """A fresh connection for a replica that failed its check, so that the next check tries
        to connect at once: a gRPC channel whose connection failed fails every call until its
        reconnect backoff (growing to minutes) runs out, so a trainer that came up meanwhile
        would look down. Only with none of our trainings on it: closing a channel ends its
        streams."""
        old, replica.client = replica.client, self._connect(replica.address)
        await old.close()

    def _forget_unlisted(self, replica: Replica) -> None:
        """A replica gone from DNS is dropped once nothing of ours runs there."""
        if not replica.listed and not replica.placed and \
                self.replicas.get(replica.address) is replica:
            del self.replicas[replica.address]
            asyncio.get_running_loop().create_task(replica.client.close())

