"""Alias changes pushed to watchers (`WatchAliases`): a snapshot first, then each change in order.

The store's alias change log is the truth (its sequence is durable); the feed only hands each
watcher the changes committed while it watches, in a bounded queue per watcher so that a slow
watcher never holds up SetAlias. A watcher whose queue is full loses its backlog and gets a
fresh snapshot instead (drop-and-resync): it converges on the same state, skipping the
intermediate versions it was too slow to see. A watcher sees one project's aliases, or with
project None (the admin key) every project's.

The store publishes under its lock, so publications come in commit order; each is handed to
the event loop with call_soon_threadsafe, from whatever thread committed it, which keeps that
order (a promotion commits from the job runner, SetAlias from the servicer).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from distill.v1 import gateway_pb2
from services.common.errors import InvalidArgument
from services.gateway.job_store import AliasChange, JobStore


class _Watcher:
    """One stream's pending changes; `stale` once more than `size` piled up."""

    __slots__ = ("pending", "project", "size", "stale", "wake")

    def __init__(self, size: int, project: str | None) -> None:
        self.size = size
        self.project = project
        self.pending: deque[AliasChange] = deque()
        self.stale = False
        self.wake = asyncio.Event()

    def offer(self, change: AliasChange) -> None:
        if self.project is not None and change[1].project != self.project:
            return
        if len(self.pending) >= self.size:
            self.pending.clear()  # the snapshot it will get replaces all of them
            self.stale = True
        elif not self.stale:
            self.pending.append(change)
        self.wake.set()


class AliasFeed:
    """`backlog`: the most changes a watcher may be behind, queued live or replayed on resume,
    before it is sent a snapshot instead."""

    def __init__(self, store: JobStore, backlog: int) -> None:
        self.store = store
        self.backlog = backlog
        store.on_alias = self.publish
        self._watchers: set[_Watcher] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def publish(self, sequence: int, state: gateway_pb2.AliasState) -> None:
        """Called by the store after each committed change, from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():  # else nobody has watched yet
            loop.call_soon_threadsafe(self._deliver, (sequence, state))

    def _deliver(self, change: AliasChange) -> None:
        for watcher in self._watchers:
            watcher.offer(change)

    def close(self) -> None:
        """Ends every watch (the gateway is stopping; clients resume on another one)."""
        self._closed = True
        for watcher in self._watchers:
            watcher.wake.set()

    async def watch(self, resume_after: int, project: str | None
                    ) -> AsyncIterator[gateway_pb2.WatchAliasesResponse]:
        """`project`'s aliases, or every project's with None."""
        if resume_after < 0:
            raise InvalidArgument(f"resume_after: must be >= 0, got {resume_after}")
        self._loop = asyncio.get_running_loop()
        watcher = _Watcher(self.backlog, project)
        # Joined before the first read of the store: nothing committed after that read is missed
        # (anything the read already holds is skipped below by its sequence).
        self._watchers.add(watcher)
        try:
            sent = resume_after
            for response in self._catch_up(sent if resume_after else None, project):
                yield response
                sent = response.sequence
            while not self._closed:
                if watcher.stale:  # fell behind: a snapshot replaces the changes it missed
                    watcher.stale = False
                    watcher.pending.clear()
                    for response in self._catch_up(None, project):
                        yield response
                        sent = response.sequence
                elif watcher.pending:
                    sequence, state = watcher.pending.popleft()
                    if sequence > sent:
                        yield gateway_pb2.WatchAliasesResponse(sequence=sequence, change=state)
                        sent = sequence
                else:
                    watcher.wake.clear()
                    await watcher.wake.wait()
        finally:
            self._watchers.discard(watcher)

    def _catch_up(self, after: int | None, project: str | None
                  ) -> list[gateway_pb2.WatchAliasesResponse]:
        """The changes after `after` from the store, or a snapshot (after None, or too many)."""
        changes = None if after is None else self.store.alias_changes_after(
            after, self.backlog, project)
        if changes is not None:
            return [gateway_pb2.WatchAliasesResponse(sequence=sequence, change=state)
                    for sequence, state in changes]
        sequence, states = self.store.alias_snapshot(project)
        return [gateway_pb2.WatchAliasesResponse(
            sequence=sequence, snapshot=gateway_pb2.AliasSnapshot(aliases=states))]
