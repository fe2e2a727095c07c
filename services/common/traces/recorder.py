"""The trace recorder: `record()` never waits and never fails a request; a background task writes
batches of traces as JSONL segments.

Memory is bounded by `capacity` traces (buffered plus being written). When it is full the new
trace is dropped and counted (`dropped`, and `counted("dropped", 1)`: the router's
`distill_router_traces` metric): a slow store costs traces, never latency. A batch is written
when it reaches `batch_rows` or `flush_seconds` after its first trace, whichever comes first, so
a quiet alias still gets its traces out and a busy one writes few, large segments.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

from services.common.storage import ArtifactStore
from services.common.traces import layout
from services.common.traces.records import Trace, encode, to_line
from services.common.traces.redaction import Redactor

log = logging.getLogger(__name__)

Counted = Callable[[str, int], None]  # (outcome: written, dropped or failed; traces)


def _uncounted(outcome: str, traces: int) -> None:
    pass


class TraceRecorder:
    def __init__(self, store: ArtifactStore, *, capacity: int = 10_000, batch_rows: int = 1_000,
                 flush_seconds: float = 5.0, counted: Counted = _uncounted):
        self._store = store
        self._counted = counted
        self._capacity = capacity
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        # (trace, its alias's redaction rules): redacted when written, off the request's path
        self._buffer: list[tuple[Trace, Redactor | None]] = []
        self._pending = 0  # buffered + being written: what `capacity` bounds
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._write_lock = asyncio.Lock()  # segments are written one batch at a time, in order
        self.dropped = self.failed = 0

    def record(self, trace: Trace, redact: Redactor | None = None) -> bool:
        """Queues `trace`, to be written with `redact` applied (False: the queue is full)."""
        if self._pending >= self._capacity:
            self.dropped += 1
            self._counted("dropped", 1)
            return False
        self._buffer.append((trace, redact))
        self._pending += 1
        self._wake.set()
        if len(self._buffer) >= self._batch_rows:
            self._full.set()
        return True

    async def run(self) -> None:
        """The background writer; cancel it after a last `flush()` at shutdown."""
        while True:
            await self._wake.wait()
            try:
                await asyncio.wait_for(self._full.wait(), self._flush_seconds)
            except TimeoutError:
                pass
            await self.flush()

    async def flush(self) -> None:
        """Writes everything recorded so far (returns when it is in the store, or counted as
        failed)."""
        async with self._write_lock:
            batch, self._buffer = self._buffer, []
            self._wake.clear()
            self._full.clear()
            if not batch:
                return
            try:
                await asyncio.to_thread(self._write, batch)
                self._counted("written", len(batch))
            except Exception:
                self.failed += len(batch)
                self._counted("failed", len(batch))
                log.exception("could not write %d traces", len(batch))
            finally:
                self._pending -= len(batch)

    def _write(self, batch: list[tuple[Trace, Redactor | None]]) -> None:
        groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
        for trace, redact in batch:
            line = to_line(trace.redacted(redact) if redact else trace)
            groups[trace.project, trace.served_by.alias, layout.day_of(trace.created_at)].append(
                line)
        for (project, alias, _), lines in groups.items():
            key = layout.segment_key(project, alias, lines[0]["created_at"])
            self._store.put_bytes(key, encode(lines), media_type="application/jsonl")
