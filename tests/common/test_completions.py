"""completions(): bounded concurrent work, results in order of completion, the first error
raised and the rest cancelled. Each task waits on an event the test sets, so completion order
and the number running at once are the test's own, not the scheduler's."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from services.common.completions import completions


class Tasks:
    """Task i waits until `release(i)`, then emits i (or raises when told to fail)."""

    def __init__(self, count: int, fail: int | None = None) -> None:
        self.gates = [asyncio.Event() for _ in range(count)]
        self.fail = fail
        self.running: set[int] = set()
        self.most = 0
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.changed = asyncio.Event()

    async def run(self, i: int, emit) -> None:
        self.running.add(i)
        self.started.append(i)
        self.most = max(self.most, len(self.running))
        self.changed.set()
        try:
            await self.gates[i].wait()
            if i == self.fail:
                raise RuntimeError(f"task {i} failed")
            emit(i)
        except asyncio.CancelledError:
            self.cancelled.append(i)
            raise
        finally:
            self.running.discard(i)

    async def until(self, condition) -> None:
        async with asyncio.timeout(120):  # bounds a broken test only
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def collect(stream, results: list) -> None:
    async for result in stream:
        results.append(result)


async def test_results_come_in_order_of_completion_within_the_bound():
    tasks = Tasks(5)
    results = []
    consumer = asyncio.create_task(collect(completions(range(5), tasks.run, limit=2), results))
    await tasks.until(lambda: tasks.started == [0, 1])
    for i in (1, 0, 3, 2, 4):  # each released once it has started
        await tasks.until(lambda i=i: i in tasks.started)
        tasks.gates[i].set()
    await asyncio.wait_for(consumer, 120)
    assert results == [1, 0, 3, 2, 4]
    assert tasks.most == 2 and sorted(tasks.started) == [0, 1, 2, 3, 4]


async def test_the_first_error_is_raised_and_the_others_are_cancelled():
    tasks = Tasks(4, fail=1)
    results = []
    consumer = asyncio.create_task(collect(completions(range(4), tasks.run, limit=3), results))
    await tasks.until(lambda: tasks.started == [0, 1, 2])
    tasks.gates[1].set()
    with pytest.raises(RuntimeError, match="task 1 failed"):
        await asyncio.wait_for(consumer, 120)
    assert results == [] and sorted(tasks.cancelled) == [0, 2]
    assert 3 not in tasks.started and not tasks.running


async def test_an_error_from_the_items_is_raised_and_the_tasks_are_cancelled():
    tasks = Tasks(2)

    async def items():
        yield 0
        await tasks.until(lambda: 0 in tasks.started)
        raise ValueError("only groups may follow the config")

    with pytest.raises(ValueError, match="only groups"):
        async for _ in completions(items(), tasks.run, limit=2):
            pass
    assert tasks.cancelled == [0]


async def test_a_consumer_that_stops_early_cancels_the_rest():
    tasks = Tasks(3)
    stream = completions(range(3), tasks.run, limit=3)
    async with contextlib.aclosing(stream):
        waiting = asyncio.ensure_future(anext(stream))
        await tasks.until(lambda: len(tasks.started) == 3)
        tasks.gates[2].set()
        assert await asyncio.wait_for(waiting, 120) == 2
    assert sorted(tasks.cancelled) == [0, 1] and not tasks.running


async def test_emit_from_another_thread_keeps_its_order():
    def work(emit) -> None:
        for i in range(100):
            emit(i)

    async def run(_, emit) -> None:
        thread = threading.Thread(target=work, args=(emit,))
        thread.start()
        await asyncio.to_thread(thread.join)

    assert [i async for i in completions([None], run, limit=1)] == list(range(100))


async def test_no_items_is_an_empty_stream_and_the_limit_is_checked():
    assert [i async for i in completions([], Tasks(0).run, limit=1)] == []
    with pytest.raises(ValueError, match="limit: must be >= 1, got 0"):
        await anext(completions([1], Tasks(1).run, limit=0))
