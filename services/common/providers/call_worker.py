"""A teacher-call process: runs provider calls for `CallProcesses` in the service's process.

    python -m services.common.providers.call_worker      # started by CallProcesses, not by hand

At dozens of calls in flight an SDK call costs about 2 ms of CPU on the event loop, more than
the loop of one process can give at a few hundred calls a second (benchmarks/RESULTS.md,
generator_fanout). A few of these processes each run an SDK client and an event loop of their
own; the job's rate limiter, retries and teacher cache stay in the service's process.

The channel is stdin/stdout, one frame per message (`call_processes.frame`). Parent to worker:
    ("open", provider_id, ModelConfig, api_key, openai_n)   a provider for later calls
    ("call", call_id, provider_id, CompletionRequest)
    ("cancel", call_id)
    ("close", provider_id)
Worker to parent: (call_id, ok, Completion or exception, supports_n: what the provider has
learned about `n` so far). The worker ends when its stdin closes (the parent closed it, or died).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from services.common import errors
from services.common.heap import freeze_startup_objects
from services.common.providers.call_processes import frame, read_frame


def outcome_frame(call_id: int, ok: bool, value: Any, supports_n: bool | None) -> bytes:
    """The reply to a call. An exception that does not pickle (one holding a socket, say)
    travels as an INTERNAL error naming its type only: its text is not known to be free of
    secrets, as the providers' own errors are."""
    try:
        return frame((call_id, ok, value, supports_n))
    except Exception:  # noqa: BLE001 - any pickling failure
        failure = errors.DistillError(
            f"teacher call failed in a call process: {type(value).__name__}")
        return frame((call_id, False, failure, supports_n))


class _Worker:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.providers: dict[int, Any] = {}
        self.calls: dict[int, asyncio.Task] = {}
        self.closing: set[asyncio.Task] = set()
        self.frozen = False

    def handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "open":
            from services.common.providers.spec import build_provider

            _, provider_id, config, api_key, openai_n = message
            try:
                self.providers[provider_id] = build_provider(config, api_key, openai_n=openai_n)
            except Exception as exc:  # noqa: BLE001 - every call to it answers with this
                self.providers[provider_id] = exc
            if not self.frozen:  # the first open: the SDK is imported now, no call runs yet
                freeze_startup_objects()
                self.frozen = True
        elif kind == "call":
            _, call_id, provider_id, request = message
            task = asyncio.create_task(self._call(call_id, provider_id, request))
            self.calls[call_id] = task
            task.add_done_callback(lambda _: self.calls.pop(call_id, None))
        elif kind == "cancel":
            task = self.calls.get(message[1])
            if task is not None:
                task.cancel()
        elif kind == "close":
            provider = self.providers.pop(message[1], None)
            if provider is not None and not isinstance(provider, Exception):
                self.closing.add(asyncio.create_task(provider.aclose()))

    async def _call(self, call_id: int, provider_id: int, request: Any) -> None:
        provider = self.providers.get(provider_id)
        if provider is None:  # closed, or never opened: a bug, but the caller must not hang
            provider = errors.DistillError(f"teacher call for unknown provider {provider_id}")
        if isinstance(provider, Exception):
            self.writer.write(outcome_frame(call_id, False, provider, None))
            return
        try:
            value, ok = await provider.complete(request), True
        except asyncio.CancelledError:
            return  # the caller gave up on it: nobody waits for an answer
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            value, ok = exc, False
        self.writer.write(outcome_frame(call_id, ok, value, provider.supports_n))

    async def close(self) -> None:
        for task in list(self.calls.values()):
            task.cancel()
        await asyncio.gather(*self.calls.values(), *self.closing, return_exceptions=True)
        for provider in self.providers.values():
            if not isinstance(provider, Exception):
                await provider.aclose()


async def serve(channel_in: int, channel_out: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(channel_in, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(channel_out, "wb", buffering=0))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    worker = _Worker(writer)
    try:
        while True:
            try:
                message = await read_frame(reader)
            except asyncio.IncompleteReadError:
                return
            worker.handle(message)
    finally:
        await worker.close()
        transport.close()


def main() -> None:
    # The channel gets its own descriptor and fd 1 becomes stderr, so that nothing printed by
    # a library can corrupt a frame.
    channel_out = os.dup(1)
    os.dup2(2, 1)
    # Ctrl-C in a terminal reaches the whole process group: the service ends this process by
    # closing its stdin, after its own shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="teacher call process: %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(0, channel_out))


if __name__ == "__main__":
    main()
