"""The watch hub: watchers get every change up to the terminal snapshot, and the hub forgets a
job once it is finished, so its memory does not grow with the jobs a gateway has run."""

from __future__ import annotations

import asyncio
import ctypes

from distill.v1 import gateway_pb2
from services.gateway.watch import JobHub
from tests.fixtures.waits import async_wait_for

RUNNING, DONE = gateway_pb2.JOB_STATE_GENERATING, gateway_pb2.JOB_STATE_SUCCEEDED


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def c_heap_in_use() -> int:
    """Bytes glibc's malloc has handed out and not had back. Protobuf messages live there, out
    of tracemalloc's sight."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def job(i: int, state: int, note: str = "") -> gateway_pb2.Job:
    return gateway_pb2.Job(name=f"jobs/j{i:04d}", state=state,
                           error=gateway_pb2.JobError(message=note))


async def test_a_watcher_gets_every_change_then_the_terminal_snapshot():
    hub = JobHub()
    seen: list[gateway_pb2.Job] = []

    async def watch() -> None:
        async for snapshot in hub.watch(job(1, RUNNING)):
            seen.append(snapshot)

    watcher = asyncio.create_task(watch())
    await async_wait_for(lambda: len(seen) == 1, "the current snapshot")
    hub.publish(job(1, RUNNING, "step 1"))
    await async_wait_for(lambda: len(seen) == 2, "the first change")
    hub.publish(job(1, DONE, "finished"))
    await asyncio.wait_for(watcher, 60)  # the watch ends at the terminal snapshot
    assert [(s.state, s.error.message) for s in seen] == [
        (RUNNING, ""), (RUNNING, "step 1"), (DONE, "finished")]
    finished = [s async for s in hub.watch(job(1, DONE, "finished"))]
    # A terminal job read from the store: yielded once, nothing to wait for.
    assert [s.error.message for s in finished] == ["finished"]


async def test_the_hub_forgets_finished_jobs():
    """200 jobs with 100 kB snapshots run to the end, half of them watched: afterwards the heap
    has grown by less than 20 snapshots' worth, a margin for whatever else the test process
    allocates meanwhile (a hub that kept them grew by all 20 MB)."""
    hub = JobHub()
    payload = "x" * 100_000
    before = c_heap_in_use()
    for i in range(200):
        watcher = None
        if i % 2:
            watcher = hub.watch(job(i, RUNNING))
            await anext(watcher)
        hub.publish(job(i, RUNNING, payload))
        hub.publish(job(i, RUNNING, payload + "!"))
        if watcher is not None:
            assert (await anext(watcher)).error.message == payload + "!"
        hub.publish(job(i, DONE, payload))
        if watcher is not None:
            assert (await anext(watcher)).state == DONE
            assert [s async for s in watcher] == []
    held = c_heap_in_use() - before
    assert held < 20 * len(payload), held
