"""One way to run work concurrently and stream its results: `completions(items, run, limit=n)`.

`run(item, emit)` runs for each item, at most `limit` at once; whatever it passes to `emit`
is yielded in the order it was emitted (so results come in order of completion, not of the
items). `emit` may be called from another thread (a blocking job run with asyncio.to_thread).
The first error, from a task or from `items` itself, is raised after cancelling every other
task; a consumer that stops early (closes the stream, is cancelled) cancels them too, so no
orphan keeps spending.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
Emit = Callable[[Any], None]
_ITEM, _ERROR, _DONE = range(3)


async def _each(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def completions(items: Iterable[T] | AsyncIterable[T],
                      run: Callable[[T, Emit], Awaitable[None]], *,
                      limit: int) -> AsyncIterator[Any]:
    if limit < 1:
        raise ValueError(f"limit: must be >= 1, got {limit}")
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    out: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    slots = asyncio.Semaphore(limit)
    tasks: set[asyncio.Task] = set()
    fed = False

    def emit(result: Any) -> None:
        if threading.get_ident() == loop_thread:
            out.put_nowait((_ITEM, result))
        elif not loop.is_closed():  # after the loop ends nobody is left to read it
            loop.call_soon_threadsafe(out.put_nowait, (_ITEM, result))

    def settle() -> None:
        if fed and not tasks:
            out.put_nowait((_DONE, None))

    async def one(item: T) -> None:
        try:
            await run(item, emit)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the stream, which raises it
            out.put_nowait((_ERROR, exc))
        finally:
            slots.release()
            tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            settle()

    async def feed() -> None:
        nonlocal fed
        try:
            async for item in _each(items):
                await slots.acquire()
                tasks.add(asyncio.create_task(one(item)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the stream, which raises it
            out.put_nowait((_ERROR, exc))
            return
        fed = True
        settle()

    feeder = asyncio.create_task(feed())
    try:
        while True:
            kind, value = await out.get()
            if kind == _ITEM:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        feeder.cancel()
        running = [feeder, *tasks]
        for task in running:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*running, return_exceptions=True)
