"""The engine supervisor on real engine processes: started on first use, restarted after a
crash, the least recently used idle one stopped for a new one, idle ones stopped."""

from __future__ import annotations

import httpx
import pytest

from services.common.errors import ResourceExhausted
from services.common.models import packaged_smollm2_gguf
from services.router.engines import EngineSupervisor
from services.router.settings import RouterSettings
from tests.fixtures.waits import async_wait_for


@pytest.fixture
async def supervisor(tmp_path):
    def make(**settings) -> EngineSupervisor:
        made = EngineSupervisor(RouterSettings(engine_threads=1, **settings), http,
                                tmp_path / "logs")
        created.append(made)
        return made

    created: list[EngineSupervisor] = []
    async with httpx.AsyncClient(trust_env=False) as http:
        yield make
        for made in created:
            await made.aclose()


async def test_lru_engine_is_stopped_for_a_new_one_and_a_crash_restarts(supervisor):
    engines = supervisor(max_engines=1, engine_idle_seconds=0)
    gguf = packaged_smollm2_gguf()
    await engines.warm("a", gguf)
    first = engines.engines["a"].proc
    async with engines.lease("b", gguf) as b:  # a second student: "a" is idle, so it goes
        assert first.poll() is not None and list(engines.engines) == ["b"]
        with pytest.raises(ResourceExhausted, match="max_engines 1"):
            await engines.warm("c", gguf)  # "b" is answering: nothing can go
        b.kill()
    await async_wait_for(lambda: not b.running, "the killed engine exited")
    async with engines.lease("b", gguf) as again:
        assert again.running and engines.restarts == 1 and again.starts == 2


@pytest.mark.parametrize("kind", ["llama-server", "llama-cpp-python"])
async def test_idle_engine_is_stopped(supervisor, kind):
    engines = supervisor(engine=kind, engine_idle_seconds=0.5)
    engines.start_reaper()
    async with engines.lease("a", packaged_smollm2_gguf()) as engine, \
            httpx.AsyncClient(trust_env=False) as http:  # leased: not idle while it answers
        proc = engine.proc
        reply = await http.post(f"{engine.base_url}/chat/completions", json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}, timeout=120)
        assert reply.status_code == 200 and reply.json()["choices"]  # OpenAI's API
    await async_wait_for(lambda: not engines.engines, "the idle engine unloaded")
    assert proc.poll() is not None
