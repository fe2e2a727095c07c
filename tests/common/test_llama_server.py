"""llama.cpp's `llama-server` as `make setup` builds it: found, started on loopback with the
offline SmolLM2 GGUF, answering OpenAI's chat API; LoRA GGUFs as the exporter writes them,
selected per request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.local_suite import stop_process
from services.common.errors import FailedPrecondition
from services.common.llama_server import (
    BINARY_ENV,
    LlamaServer,
    llama_server_binary,
    start_llama_server,
)
from services.common.models import packaged_smollm2_gguf, prepare_smollm2
from services.exporter.gguf import Converter, convert_lora
from services.exporter.settings import default_converter_dir
from tests.exporter.helpers import make_adapter
from tests.fixtures.tiny_llama import shared_cache_dir


def test_missing_binary_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "nowhere" / "llama-server"))
    with pytest.raises(FailedPrecondition) as err:
        llama_server_binary()
    assert "make setup" in str(err.value) and str(tmp_path / "nowhere") in str(err.value)


def test_setup_installed_the_binary(monkeypatch):
    monkeypatch.delenv(BINARY_ENV, raising=False)
    assert llama_server_binary().name == "llama-server"


@pytest.fixture
def serve(tmp_path) -> Iterator:
    started: list[LlamaServer] = []

    def start(model: Path, *args: str) -> str:
        server = start_llama_server(model, tmp_path / f"llama-server-{len(started)}.log",
                                    args=["--ctx-size", "1024", "--threads", "2", *args])
        started.append(server)
        return server.wait_ready()

    yield start
    for server in started:
        stop_process(server.proc)


def _client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.mark.slow
def test_smollm2_answers_health_and_chat(serve):
    import urllib.request

    url = serve(packaged_smollm2_gguf(), "--parallel", "2")
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        assert response.status == 200
    answer = _client(url).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16, temperature=0, seed=1,
    )
    assert answer.choices[0].message.content.strip()
    assert 0 < answer.usage.completion_tokens <= 16
    assert answer.usage.prompt_tokens > 5


@pytest.fixture(scope="module")
def smollm2_lora(tmp_path_factory) -> Path:
    """A random LoRA on SmolLM2 as a LoRA GGUF, converted the exporter's way (its
    `export.lora_gguf` output: llama.cpp's convert_lora_to_gguf.py, f16)."""
    out = tmp_path_factory.mktemp("smollm2-lora")
    base_dir = prepare_smollm2(shared_cache_dir())
    adapter = make_adapter(base_dir, out / "adapter")
    converter = Converter.locate(default_converter_dir())
    return asyncio.run(convert_lora(converter, adapter, base_dir, out / "lora.gguf",
                                    timeout=600))


@pytest.mark.slow
def test_lora_adapter_is_chosen_per_request(serve, smollm2_lora):
    """One base process (the quantized SmolLM2 GGUF) serves the base and the adapter: the
    request's `lora` scale picks, and the other answer is left as it was."""
    url = serve(packaged_smollm2_gguf(), "--lora", str(smollm2_lora), "--lora-init-without-apply")
    client = _client(url)

    def ask(scale: float) -> str:
        answer = client.chat.completions.create(
            model="smollm2", max_tokens=12,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0, extra_body={"lora": [{"id": 0, "scale": scale}]},
        )
        return answer.choices[0].message.content

    without, with_adapter = ask(0.0), ask(1.0)
    assert without != with_adapter
    assert ask(0.0) == without  # the adapter left no trace on the base
    assert ask(1.0) == with_adapter
