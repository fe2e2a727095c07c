"""Job snapshots pushed to watchers: the current one first, then one per change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from distill.v1 import gateway_pb2
from services.gateway.job_store import TERMINAL


class _Feed:
    """One unfinished job's latest snapshot, and the event that wakes its watchers (replaced at
    each publish, so a watcher waits for the next change, not one it has seen)."""

    __slots__ = ("changed", "latest")

    def __init__(self) -> None:
        self.latest: gateway_pb2.Job | None = None
        self.changed = asyncio.Event()


class JobHub:
    """In-process change feed. The job store is the truth; the hub only wakes watchers.

    It remembers unfinished jobs only: a terminal snapshot is handed to the watchers waiting for
    it and then forgotten, so the hub does not grow with the jobs a gateway has finished (a later
    watcher reads the terminal job from the store and needs no feed)."""

    def __init__(self) -> None:
        self._feeds: dict[str, _Feed] = {}
        self._closed = False

    def close(self) -> None:
        """Ends every watch (the gateway is stopping; clients reconnect to another one)."""
        self._closed = True
        for feed in self._feeds.values():
            feed.changed.set()
        self._feeds.clear()

    def publish(self, job: gateway_pb2.Job) -> None:
        if job.state in TERMINAL:
            feed = self._feeds.pop(job.name, None)
            if feed is None:
                return  # nobody watches it and nothing needs to remember it
        else:
            feed = self._feeds.setdefault(job.name, _Feed())
        snapshot = gateway_pb2.Job()
        snapshot.CopyFrom(job)
        feed.latest = snapshot
        woken, feed.changed = feed.changed, asyncio.Event()
        woken.set()

    async def watch(self, current: gateway_pb2.Job) -> AsyncIterator[gateway_pb2.Job]:
        """Yields `current`, then every later snapshot, until a terminal state."""
        job = current
        # Joined before the first yield: no publish can fall between the caller's store read
        # and this watcher's feed.
        feed = None if job.state in TERMINAL else self._feeds.setdefault(job.name, _Feed())
        yield job
        while feed is not None and job.state not in TERMINAL and not self._closed:
            latest = feed.latest
            if latest is None or latest.SerializeToString() == job.SerializeToString():
                await feed.changed.wait()
                if self._closed:
                    return
                latest = feed.latest
            job = latest
            yield job
