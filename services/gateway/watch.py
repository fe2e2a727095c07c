"""Job snapshots pushed to watchers: the current one first, then one per change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from distill.v1 import gateway_pb2
from services.gateway.job_store import TERMINAL


class JobHub:
    """In-process change feed. The job store is the truth; the hub only wakes watchers."""

    def __init__(self) -> None:
        self._latest: dict[str, gateway_pb2.Job] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._closed = False

    def close(self) -> None:
        """Ends every watch (the gateway is stopping; clients reconnect to another one)."""
        self._closed = True
        for event in self._changed.values():
            event.set()
        self._changed.clear()

    def publish(self, job: gateway_pb2.Job) -> None:
        snapshot = gateway_pb2.Job()
        snapshot.CopyFrom(job)
        self._latest[job.name] = snapshot
        event = self._changed.pop(job.name, None)
        if event is not None:
            event.set()

    async def watch(self, current: gateway_pb2.Job) -> AsyncIterator[gateway_pb2.Job]:
        """Yields `current`, then every later snapshot, until a terminal state."""
        job = current
        yield job
        while job.state not in TERMINAL and not self._closed:
            latest = self._latest.get(job.name)
            if latest is None or latest.SerializeToString() == job.SerializeToString():
                event = self._changed.setdefault(job.name, asyncio.Event())
                await event.wait()
                latest = self._latest.get(job.name)
                if self._closed or latest is None:
                    return
            job = latest
            yield job
