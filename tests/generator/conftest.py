"""Fixtures for generator tests: the fake provider, the real S3 server, an in-process service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import pytest

from distill.v1 import generator_pb2_grpc
from services.common.server import start
from services.common.storage import ArtifactStore
from services.generator.server import GeneratorService, build
from services.generator.settings import GeneratorSettings
from tests.fixtures.fake_provider import FakeProviderHandle, run_fake_provider
from tests.fixtures.s3_server import s3_server  # noqa: F401 - re-exported as a pytest fixture

KEY_ENV = "FAKE_TEACHER_API_KEY"
KEY = "sk-distill-TEST-KEY-5ae1c0ffee"  # recognisable, so a leak is easy to find


@pytest.fixture
def fake() -> Iterator[FakeProviderHandle]:
    with run_fake_provider() as handle:
        yield handle


@dataclass
class Generator:
    stub: generator_pb2_grpc.GeneratorServiceStub
    store: ArtifactStore
    settings: GeneratorSettings
    servicer: GeneratorService


@pytest.fixture
async def generator_factory(tmp_path, monkeypatch, fake) -> AsyncIterator:
    """Starts the real service in process (real gRPC over loopback) with the given settings,
    configured with the fake provider's endpoints (and one whose key variable is unset)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    opened = []

    async def launch(**overrides) -> Generator:
        values = {"port": 0, "grace_seconds": 0, "store_url": f"file://{tmp_path / 'store'}",
                  "progress_interval_seconds": 0, "retry_base_delay_seconds": 0.01,
                  "retry_max_delay_seconds": 0.05, "providers": {
                      **fake.providers(KEY_ENV), "fake-missing": {
                          "provider": "openai", "base_url": fake.openai_base_url,
                          "api_key_env": "MISSING_TEACHER_API_KEY"}},
                  **overrides}
        settings = GeneratorSettings(**values)
        services = build(settings)
        running = await start(settings, services)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        opened.append((running, channel))
        return Generator(generator_pb2_grpc.GeneratorServiceStub(channel),
                         services[0].servicer.store, settings, services[0].servicer)

    yield launch
    for running, channel in opened:
        await channel.close()
        await running.stop()


@pytest.fixture
async def generator(generator_factory) -> Generator:
    return await generator_factory()
