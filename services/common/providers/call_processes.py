"""Teacher calls spread over a few processes (`call_worker.py`), shared by a service's jobs.

    processes = CallProcesses(2)                   # once per service; processes start lazily
    provider = open_provider(config, field="teacher", processes=processes)
    ...                                            # a ModelProvider like any other
    await provider.aclose(); await processes.aclose()

Only the provider's `complete` moves: the ModelClient around it (rate limiter, retries, teacher
cache, usage) stays in the caller's process, so limits and the cache are the job's, whichever
process makes a call. A call process that dies fails its calls in flight as retryable (the
client asks again) and is started again at the next call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.providers.base import Completion, CompletionRequest, RetryableProviderError

log = logging.getLogger(__name__)
_LENGTH = struct.Struct("!I")
_ROOT = Path(__file__).resolve().parents[3]  # the folder that holds `services`


def frame(message: Any) -> bytes:
    """One message on a call process's channel: its length (4 bytes), then its pickle (both
    ends are this project's code)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message; asyncio.IncompleteReadError at the end of the stream."""
    size = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]
    return pickle.loads(await reader.readexactly(size))


@dataclass
class _Process:
    proc: asyncio.subprocess.Process
    pending: dict[int, asyncio.Future] = field(default_factory=dict)
    opened: set[int] = field(default_factory=set)
    ended: bool = False  # its channel closed: no new calls go to it

    @property
    def alive(self) -> bool:
        return not self.ended and self.proc.returncode is None

    def send(self, message: tuple) -> None:
        self.proc.stdin.write(frame(message))


class CallProcesses:
    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"CallProcesses needs at least 1 process, got {count}")
        self.count = count
        self._slots: list[_Process | None] = [None] * count
        self._starting: list[asyncio.Task | None] = [None] * count
        self._providers: dict[int, tuple] = {}  # provider id -> its "open" message
        self._ids = itertools.count()
        self._readers: set[asyncio.Task] = set()

    def pids(self) -> list[int]:
        """Process ids of the call processes running now."""
        return [p.proc.pid for p in self._slots if p is not None and p.alive]

    def provider(self, config: Any, api_key: str, *, openai_n: str = "auto") -> RemoteProvider:
        provider_id = next(self._ids)
        self._providers[provider_id] = ("open", provider_id, config, api_key, openai_n)
        return RemoteProvider(self, provider_id, config)

    async def call(self, provider_id: int,
                   request: CompletionRequest) -> tuple[Completion, bool | None]:
        """The completion, and what the provider that made it has learned about `n`."""
        process = await self._least_busy()
        if provider_id not in process.opened:
            process.send(self._providers[provider_id])
            process.opened.add(provider_id)
        call_id = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        process.pending[call_id] = answer
        process.send(("call", call_id, provider_id, request))
        try:
            return await answer
        except asyncio.CancelledError:
            if process.alive:
                process.send(("cancel", call_id))
            raise
        finally:
            process.pending.pop(call_id, None)

    def close_provider(self, provider_id: int) -> None:
        self._providers.pop(provider_id, None)
        for process in self._slots:
            if process is not None and process.alive and provider_id in process.opened:
                process.send(("close", provider_id))
                process.opened.discard(provider_id)

    async def aclose(self) -> None:
        """Ends the processes: stdin closed (they cancel their calls and exit), killed after 5 s."""
        for task in self._starting:
            if task is not None:
                task.cancel()
        for process in filter(None, self._slots):
            if process.proc.returncode is None:
                process.proc.stdin.close()
        for process in filter(None, self._slots):
            try:
                await asyncio.wait_for(process.proc.wait(), 5)
            except TimeoutError:
                process.proc.kill()
                await process.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._slots = [None] * self.count

    async def _least_busy(self) -> _Process:
        alive = [p for p in self._slots if p is not None and p.alive]
        if len(alive) < self.count:
            started = await asyncio.gather(*(self._started(i) for i in range(self.count)),
                                           return_exceptions=True)
            alive = [p for p in self._slots if p is not None and p.alive]
            if not alive:
                failure = next((e for e in started if isinstance(e, Exception)), None)
                raise RetryableProviderError(
                    f"no teacher call process could be started: {failure!r}")
        return min(alive, key=lambda p: len(p.pending))

    async def _started(self, slot: int) -> None:
        """Starts the process in `slot` unless it runs (one start at a time per slot)."""
        process = self._slots[slot]
        if process is not None and process.alive:
            return
        if self._starting[slot] is None or self._starting[slot].done():
            self._starting[slot] = asyncio.create_task(self._start(slot))
        await asyncio.shield(self._starting[slot])

    async def _start(self, slot: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_ROOT), env.get("PYTHONPATH"))))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.common.providers.call_worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        process = _Process(proc)
        reader = asyncio.create_task(self._read(process))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        self._slots[slot] = process

    async def _read(self, process: _Process) -> None:
        try:
            while True:
                call_id, ok, value, supports_n = await read_frame(process.proc.stdout)
                answer = process.pending.get(call_id)
                if answer is None or answer.done():
                    continue  # cancelled meanwhile
                if ok:
                    answer.set_result((value, supports_n))
                else:
                    answer.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            process.ended = True
            try:
                code = await asyncio.wait_for(process.proc.wait(), 5)
            except TimeoutError:  # alive but its channel closed: no use to anyone
                process.proc.kill()
                code = await process.proc.wait()
            lost = RetryableProviderError(
                f"teacher call process {process.proc.pid} ended (exit code {code}) with the "
                "call in flight")
            if process.pending:
                log.warning("teacher call process ended; its calls are retried",
                            extra={"pid": process.proc.pid, "calls": len(process.pending)})
            for answer in process.pending.values():
                if not answer.done():
                    answer.set_exception(lost)


class RemoteProvider:
    """A ModelProvider whose calls run in `CallProcesses`."""

    def __init__(self, processes: CallProcesses, provider_id: int, config: Any) -> None:
        self.name = config.provider
        self.model = config.model
        self.base_url = config.base_url  # part of the teacher-cache identity, as in-process
        self.supports_n: bool | None = None
        self._processes = processes
        self._id = provider_id

    async def complete(self, request: CompletionRequest) -> Completion:
        completion, supports_n = await self._processes.call(self._id, request)
        # What the process's provider learned about `n` (a server that ignores it), for the
        # client's next calls.
        if supports_n is not None:
            self.supports_n = supports_n
        return completion

    async def aclose(self) -> None:
        self._processes.close_provider(self._id)
