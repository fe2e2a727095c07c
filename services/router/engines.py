"""Student engines: one OpenAI-compatible server process per GGUF, supervised here.

No inference runs in the router: llama.cpp's `llama-server` (continuous batching, parallel
slots; services/common/llama_server.py) does it, or llama-cpp-python's own server (one request
at a time; setting `engine`, for comparison). An engine starts on first use and takes traffic
once it answers `/health` (`/v1/models`); one that died is started again by the next request
that needs it (and counted); one left unused `engine_idle_seconds` is stopped, and so is the
least recently used idle one when a new engine would pass `max_engines` or the memory budget.
A request holds a lease on its engine, so neither unloading nor a hot swap stops an engine in
the middle of an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil

from services.common import errors
from services.common.llama_server import start_llama_server
from services.router.settings import RouterSettings

log = logging.getLogger("distill.router.engines")


def _free_port() -> int:
    # llama-cpp-python's server cannot report a port the kernel picked, so one is picked here;
    # a start that loses it to another process fails its health check with the process gone,
    # and the next attempt picks another port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Engine:
    def __init__(self, key: str, gguf: Path, log_path: Path) -> None:
        self.key = key
        self.gguf = gguf
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        # "http://127.0.0.1:PORT/v1" once started.
        self.base_url = ""
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.starts = 0
        self.lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def memory_bytes(self) -> int:
        """Resident memory now, or the GGUF's size for an engine not running yet."""
        if self.running:
            with contextlib.suppress(psutil.Error):
                return psutil.Process(self.proc.pid).memory_info().rss
        return self.gguf.stat().st_size

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests)."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)


class EngineSupervisor:
    def __init__(self, settings: RouterSettings, http: httpx.AsyncClient, log_dir: Path) -> None:
        self._settings = settings
        self._http = http
        self._log_dir = log_dir
        self.engines: OrderedDict[str, Engine] = OrderedDict()  # least recently used first
        self.restarts = 0
        self._room = asyncio.Lock()
        self._reaper: asyncio.Task | None = None

    def start_reaper(self) -> None:
        if self._settings.engine_idle_seconds and self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_idle())

    @contextlib.asynccontextmanager
    async def lease(self, key: str, gguf: Path) -> AsyncIterator[Engine]:
        """A running engine for `gguf` (started if need be) that stays up until the block ends."""
        engine = await self._engine(key, gguf)
        engine.in_flight += 1
        try:
            await self._running(engine)
            yield engine
        finally:
            engine.in_flight -= 1
            engine.last_used = time.monotonic()

    async def warm(self, key: str, gguf: Path) -> None:
        async with self.lease(key, gguf):
            pass

    async def settle(self, engine: Engine, seconds: float = 5.0) -> None:
        """After a connection to `engine` broke: a crashed process closes its sockets before
        it can be reaped, so wait (a little) for its exit; the next lease then starts a new
        one instead of sending another request to the dead one. Alive after that: not a crash."""
        if engine.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(engine.proc.wait, seconds)

    async def _engine(self, key: str, gguf: Path) -> Engine:
        async with self._room:
            engine = self.engines.get(key)
            if engine is None:
                await self._make_room(gguf.stat().st_size)
                self._log_dir.mkdir(parents=True, exist_ok=True)
                engine = Engine(key, gguf, self._log_dir / f"engine-{key[:16]}.log")
                self.engines[key] = engine
            self.engines.move_to_end(key)
            return engine

    async def _make_room(self, new_bytes: int) -> None:
        s = self._settings
        while True:
            used = sum(e.memory_bytes() for e in self.engines.values())
            budget = s.engine_memory_budget_bytes
            if len(self.engines) < s.max_engines and used + new_bytes <= budget:
                return
            idle = next((e for e in self.engines.values() if e.in_flight == 0), None)
            if idle is None:
                if not self.engines:
                    return  # one engine always fits: the budget bounds how many, not whether
                raise errors.ResourceExhausted(
                    f"router: {len(self.engines)} engines busy (max_engines {s.max_engines}, "
                    f"memory budget {s.engine_memory_budget_bytes} bytes); retry later")
            log.info("unloading least recently used engine", extra={"engine": idle.key})
            await self._unload(idle)

    async def _running(self, engine: Engine) -> None:
        async with engine.lock:
            if engine.running:
                return
            if engine.proc is not None:
                self.restarts += 1
                log.warning("engine exited; restarting", extra={
                    "engine": engine.key, "exit_code": engine.proc.returncode})
            await self._start(engine)

    async def _start(self, engine: Engine) -> None:
        engine.starts += 1
        if self._settings.engine == "llama-server":
            await self._start_llama_server(engine)
        else:
            await self._start_llama_cpp_python(engine)
        log.info("engine ready", extra={"engine": engine.key, "url": engine.base_url,
                                        "pid": engine.proc.pid, "starts": engine.starts})

    async def _start_llama_server(self, engine: Engine) -> None:
        s = self._settings
        # Parallel slots share the context: each gets engine_n_ctx tokens.
        args = ["--ctx-size", str(s.engine_n_ctx * s.engine_parallel),
                "--parallel", str(s.engine_parallel)]
        if s.engine_threads:
            args += ["--threads", str(s.engine_threads)]
        server = start_llama_server(engine.gguf, engine.log_path, args=args)
        engine.proc = server.proc
        try:
            url = await asyncio.to_thread(server.wait_ready, s.engine_start_timeout_seconds)
        except errors.Unavailable:
            await asyncio.to_thread(_stop, server.proc)
            raise
        engine.base_url = f"{url}/v1"

    async def _start_llama_cpp_python(self, engine: Engine, attempts: int = 2) -> None:
        s = self._settings
        for attempt in range(1, attempts + 1):
            port = _free_port()
            argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(engine.gguf),
                    "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(s.engine_n_ctx)]
            if s.engine_threads:
                argv += ["--n_threads", str(s.engine_threads)]
            with open(engine.log_path, "ab") as out:
                engine.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True)
            engine.base_url = f"http://127.0.0.1:{port}/v1"
            if await self._answers_models(engine):
                return
            await asyncio.to_thread(_stop, engine.proc)
            log.warning("engine did not start", extra={"engine": engine.key, "attempt": attempt})
        tail = engine.log_path.read_text(errors="replace")[-2000:]
        raise errors.Unavailable(f"engine for {engine.gguf.name} did not start: {tail}")

    async def _answers_models(self, engine: Engine) -> bool:
        """llama-cpp-python's server has no /health: ready once GET /v1/models answers 200
        (polled until then, the process's exit or the start timeout)."""
        deadline = time.monotonic() + self._settings.engine_start_timeout_seconds
        while time.monotonic() < deadline and engine.running:
            with contextlib.suppress(httpx.HTTPError):
                reply = await self._http.get(f"{engine.base_url}/models", timeout=5)
                if reply.status_code == 200:
                    return True
            await asyncio.sleep(0.1)
        return False

    async def _unload(self, engine: Engine) -> None:
        # Callers hold self._room, so no lease can pick the engine up while it stops.
        if engine.proc is not None:
            await asyncio.to_thread(_stop, engine.proc)
        self.engines.pop(engine.key, None)

    async def _reap_idle(self) -> None:
        idle = self._settings.engine_idle_seconds
        while True:
            await asyncio.sleep(min(idle / 4, 30.0))
            now = time.monotonic()
            async with self._room:
                for engine in list(self.engines.values()):
                    if engine.in_flight == 0 and now - engine.last_used > idle:
                        log.info("unloading idle engine", extra={"engine": engine.key})
                        await self._unload(engine)

    async def aclose(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        async with self._room:
            for engine in list(self.engines.values()):
                await self._unload(engine)


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
