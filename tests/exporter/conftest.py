"""Fixtures for exporter tests: the tiny Llama, adapters on it, an in-process exporter server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from distill.v1 import exporter_pb2_grpc
from services.common.server import start
from services.exporter.server import build
from services.exporter.settings import ExporterSettings
from tests.exporter.helpers import make_adapter
from tests.fixtures.tiny_llama import tiny_llama_dir  # noqa: F401 - pytest fixture


@pytest.fixture(scope="session")
def tiny_adapter(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A LoRA adapter on the tiny Llama with random non-zero A and B (merging changes it)."""
    return make_adapter(tiny_llama_dir, tmp_path_factory.mktemp("tiny-adapter") / "adapter")


class ServerFactory:
    """Starts exporter servers on loopback in one background event loop; stops them all."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running: list = []
        self.channels: list[grpc.Channel] = []

    def __call__(self, settings: ExporterSettings) -> exporter_pb2_grpc.ExporterServiceStub:
        settings = settings.model_copy(update={"port": 0, "grace_seconds": 0})
        running = asyncio.run_coroutine_threadsafe(
            start(settings, build(settings)), self.loop
        ).result(30)
        self.running.append(running)
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        self.channels.append(channel)
        return exporter_pb2_grpc.ExporterServiceStub(channel)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        for running in self.running:
            asyncio.run_coroutine_threadsafe(running.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def exporter_server() -> Iterator[ServerFactory]:
    factory = ServerFactory()
    try:
        yield factory
    finally:
        factory.close()
