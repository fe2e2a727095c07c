"""The teacher-call cache: every sample a provider returned, under `cache/teacher/{sha256}.json`
(another project's under `cache/teacher/{project}/`: a project never gets an answer another one
paid for).

The key is the sha256 of (provider, model, endpoint, sampling parameters, messages, sample
index), so rerunning a job, or resuming one that was killed, asks the provider only for the
samples it never returned. The API key is not part of the key and never stored.

Entries go by the gateway's TTL sweep, or with the last job that used them (each generator
run lists its keys: `teacher_cache_keys.py`; `services/gateway/cache_release.py`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from services.common.errors import DataLoss, NotFound
from services.common.specs.layout import TEACHER_CACHE_FOLDER
from services.common.storage import ArtifactStore

log = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = TEACHER_CACHE_FOLDER
# Bump when the meaning of a cached entry changes, so old entries stop matching.
KEY_VERSION = 1


@dataclass(frozen=True)
class CachedSample:
    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_seconds: float
    model: str = ""
    created_at: float = 0.0
    # Who paid (an entry written before these fields has the defaults): the generator run and
    # prompt the call was made for, and whether this sample carries the call's request (the
    # 1st sample of an `n` call does).
    run_id: str = ""
    prompt_id: str = ""
    requests: int = 0


def cache_key(
    identity: Mapping[str, str],
    parameters: Mapping[str, object],
    messages: Sequence[Mapping[str, str]],
    sample_index: int,
) -> str:
    """sha256 hex of the canonical JSON of everything that determines one sample."""
    canonical = json.dumps(
        {
            "v": KEY_VERSION,
            **identity,
            "parameters": dict(parameters),
            "messages": [dict(m) for m in messages],
            "sample_index": sample_index,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def entry_key(prefix: str, key: str) -> str:
    """The store key of the entry `key` in the cache folder `prefix`."""
    return f"{prefix}{key}.json"


class _Batches:
    """Runs blocking store calls off the event loop in a few threads of its own, each taking
    the calls queued meanwhile as one batch (at most `max_batch`) and settling the batch's
    futures in one hop back to the loop. At hundreds of teacher calls a second, a
    `to_thread` per cache read and write (a concurrent Future, its condition and lock, a
    callback chain, the GIL hand-offs) cost the event loop more than the calls themselves. Up
    to `threads` batches run side by side so that slow writes (an S3 round trip; on ext4,
    creating files soon after many were deleted costs a millisecond of kernel time each)
    overlap instead of queueing. A thread idle for `idle_seconds` ends."""

    def __init__(self, threads: int = 4, max_batch: int = 16, idle_seconds: float = 5.0) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = threads
        self._max_batch = max_batch
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._running = 0  # threads alive
        self._waiting = 0  # of those, waiting for work

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((loop, future, functools.partial(fn, *args, **kwargs)))
        self._start_if_needed()
        return await future

    def _start_if_needed(self) -> None:
        """Another thread when work waits, no thread waits for work, and fewer than
        `threads` run."""
        with self._lock:
            if self._waiting or self._running >= self._threads or self._queue.empty():
                return
            self._running += 1
        threading.Thread(target=self._serve, name="teacher-cache-io", daemon=True).start()

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._waiting += 1
            try:
                batch = [self._queue.get(timeout=self._idle_seconds)]
            except queue.Empty:
                with self._lock:
                    self._waiting -= 1
                    if self._queue.empty():
                        self._running -= 1
                        return
                continue
            with self._lock:
                self._waiting -= 1
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._start_if_needed()  # more than one batch queued: run them side by side
            outcomes = _call_each([call for _, _, call in batch])
            by_loop: dict[asyncio.AbstractEventLoop, list] = {}
            for (loop, future, _), outcome in zip(batch, outcomes, strict=True):
                by_loop.setdefault(loop, []).append((future, outcome))
            for loop, settled in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, settled)
                except RuntimeError:  # that loop closed: nobody waits for these
                    pass


def _settle(settled: list[tuple[asyncio.Future, tuple[bool, Any]]]) -> None:
    for future, (ok, value) in settled:
        if future.done():  # its caller was cancelled; the write still happened
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _call_each(calls: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    for call in calls:
        try:
            outcomes.append((True, call()))
        except Exception as exc:  # noqa: BLE001 - handed to its own caller, as to_thread does
            outcomes.append((False, exc))
    return outcomes


class TeacherCache:
    """Async front of the (blocking) artifact store for cache entries."""

    def __init__(self, store: ArtifactStore, prefix: str = PREFIX,
                 on_use: Callable[[str], None] | None = None) -> None:
        """`on_use` is told each key read from the cache or written to it (a generator run's
        manifest, `teacher_cache_keys.py`)."""
        self.store = store
        self.prefix = prefix
        self._on_use = on_use
        # Reads apart from writes: a lookup (often a quick miss) must not wait behind writes.
        self._reads, self._writes = _Batches(), _Batches()

    def object_key(self, key: str) -> str:
        return entry_key(self.prefix, key)

    async def get(self, key: str) -> CachedSample | None:
        try:
            data = await self._reads.run(self.store.get_bytes, self.object_key(key))
        except NotFound:
            return None
        except DataLoss as exc:  # a damaged entry is a miss: the call is simply made again
            log.warning("teacher cache entry unreadable; ignoring it", extra={"error": str(exc)})
            return None
        try:
            fields = json.loads(data)
            # A field it lacks takes its default; a required one it lacks makes it malformed.
            sample = CachedSample(**{k: fields[k] for k in CachedSample.__dataclass_fields__
                                     if k in fields})
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("teacher cache entry malformed; ignoring it", extra={"error": repr(exc)})
            return None
        if self._on_use is not None:
            self._on_use(key)
        return sample

    async def put(self, key: str, sample: CachedSample) -> None:
        body = asdict(sample)
        body["created_at"] = body["created_at"] or time.time()
        data = json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")
        # Not fsynced: a crashed process loses no entry, and one torn by a power loss fails its
        # sha256 on read and counts as a miss. The fsync per call cost more than the call's CPU.
        if self._on_use is not None:  # before: a write goes on when its caller is cancelled
            self._on_use(key)
        await self._writes.run(
            self.store.put_bytes, self.object_key(key), data, media_type="application/json",
            durable=False,
        )
