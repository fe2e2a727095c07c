"""Alias → target against a real gateway: versions, pinning, and a new version warmed before it
takes traffic while the one held keeps answering (the hot swap WatchAliases will push into)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from distill.client import Distiller
from distill.v1 import directory_pb2_grpc, router_pb2
from services.common.errors import InvalidArgument, NotFound
from services.gateway.server import build
from services.gateway.settings import GatewaySettings
from services.router.targets import AliasTargets, Target
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.waits import async_wait_for


@pytest.fixture
def gateway(tmp_path):
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 'store'}",
                               db_path=tmp_path / "gateway.db")
    with serve_in_thread(settings, lambda: build(settings)) as address:
        with Distiller(address) as client:
            yield address, client


async def test_new_version_warms_before_it_takes_traffic(gateway):
    address, client = gateway
    client.set_alias("bot", teacher="gpt-4o-mini")
    warming: list[int] = []
    warmed: list[int] = []
    release = asyncio.Event()

    async def warm(target: Target) -> None:
        warming.append(target.version)
        if target.version == 2:
            await release.wait()  # a GGUF downloading, an engine starting
        warmed.append(target.version)

    async with grpc.aio.insecure_channel(address) as channel:
        targets = AliasTargets(directory_pb2_grpc.DirectoryServiceStub(channel), metadata=(),
                               default_max_tokens=100, ttl_seconds=0, warm=warm)
        first = await targets.resolve("bot")
        assert (first.version, first.kind, first.model, first.max_tokens_limit) == (
            1, router_pb2.TARGET_KIND_TEACHER, "gpt-4o-mini", 100)

        client.set_alias("bot", teacher="gpt-4o", expected_version=1)
        swapping = asyncio.create_task(targets.resolve("bot"))
        await async_wait_for(lambda: warming == [1, 2], "version 2 warming")
        assert warmed == [1]
        assert (await targets.resolve("bot")).version == 1  # the held version still answers
        release.set()
        assert (await swapping).version == 2
        assert (await targets.resolve("bot")).model == "gpt-4o"
        assert warmed == [1, 2]
        assert (await targets.resolve("bot@1")).model == "gpt-4o-mini"  # pinned: the old one

        with pytest.raises(NotFound, match="no version 3"):
            await targets.resolve("bot@3")
        with pytest.raises(NotFound, match="no alias named 'missing'"):
            await targets.resolve("missing")
        with pytest.raises(InvalidArgument, match="ALIAS@VERSION"):
            await targets.resolve("bot@x")


async def test_names_that_do_not_exist_leave_nothing_behind(gateway):
    """A caller inventing alias names must not grow the router's memory: every read of a missing
    name is refused and forgotten, its lock included."""
    address, _ = gateway

    async def warm(target: Target) -> None:
        pass

    async with grpc.aio.insecure_channel(address) as channel:
        targets = AliasTargets(directory_pb2_grpc.DirectoryServiceStub(channel), metadata=(),
                               default_max_tokens=100, ttl_seconds=60, warm=warm)
        asked = await asyncio.gather(*(targets.resolve(f"made-up-{i}") for i in range(200)),
                                     return_exceptions=True)
        assert all(isinstance(a, NotFound) for a in asked)
        assert targets._records == {} and targets._locks == {}  # the state at stake
