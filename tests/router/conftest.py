"""The router stacks of these tests (tests/fixtures/router_stack.py builds them).

`stack`, one per module: the gateway in this process, the router as a real process, llama-server
for the offline SmolLM2 GGUF, the fake teacher. `projects` is the multi-project setup instead: a
gateway with an admin key, two projects' API keys and the internal token, which the router holds.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from distill.client import Distiller
from distill.local_suite import ServiceProcess
from services.gateway.server import build as build_gateway
from services.gateway.settings import GatewaySettings
from tests.fixtures.fake_provider import FakeProviderHandle, run_fake_provider
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.processes import start_module
from tests.fixtures.router_stack import (
    RouterCalls,
    Stack,
    router_environment,
    run_router_stack,
)
from tests.fixtures.s3_server import s3_server  # noqa: F401 - pytest fixture

# Settings that let the tests see changes at once rather than after production's intervals.
TEST_ROUTER_ENV = {
    "DISTILL_ROUTER_ENGINE_THREADS": "1",
    "DISTILL_ROUTER_ALIAS_TTL_SECONDS": "0",
    "DISTILL_GRACE_SECONDS": "2",
    "DISTILL_ROUTER_TRACE_FLUSH_SECONDS": "0.2",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, s3_server) -> Iterator[Stack]:  # noqa: F811 - the fixture above
    home: Path = tmp_path_factory.mktemp("router")
    teacher_key = "sk-router-" + secrets.token_hex(8)
    with run_fake_provider(api_key=teacher_key) as fake, \
            run_router_stack(home, s3_server, fake, teacher_key,
                             router_env=TEST_ROUTER_ENV) as running:
        yield running


@dataclass
class Projects(RouterCalls):
    """Projects alpha and beta on one gateway (admin key, internal token) and a router that
    holds the internal token, so it serves both."""

    gateway_address: str
    admin: Distiller
    router: ServiceProcess
    fake: FakeProviderHandle
    keys: dict[str, str]  # project → its API key
    internal_token: str
    grpc_channel: grpc.Channel

    def client(self, project: str) -> Distiller:
        """The gateway's client with `project`'s key; the caller closes it."""
        return Distiller(self.gateway_address, token=self.keys[project])


# How long the router trusts the gateway's answer about a key in the `projects` stack.
CALLER_TTL_SECONDS = 1.0


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> Iterator[Projects]:
    home: Path = tmp_path_factory.mktemp("router-projects")
    admin_key, internal = "admin-" + secrets.token_hex(16), "internal-" + secrets.token_hex(16)
    teacher_key = "sk-router-" + secrets.token_hex(8)
    store_url = f"file://{home / 'store'}"
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=store_url,
                               db_path=home / "gateway.db", admin_token=admin_key,
                               internal_token=internal)
    with run_fake_provider(api_key=teacher_key) as fake, \
            serve_in_thread(settings, lambda: build_gateway(settings)) as gateway_address, \
            Distiller(gateway_address, token=admin_key) as admin:
        keys = {project: admin.create_api_key(project).key for project in ("alpha", "beta")}
        env = router_environment(gateway_address, home, fake, teacher_key, **TEST_ROUTER_ENV,
                                 DISTILL_STORE_URL=store_url, DISTILL_INTERNAL_TOKEN=internal,
                                 DISTILL_ROUTER_CALLER_TTL_SECONDS=str(CALLER_TTL_SECONDS))
        router = start_module("services.router", home / "logs", env=env)
        channel = grpc.insecure_channel(router.address)
        try:
            yield Projects(gateway_address, admin, router, fake, keys, internal, channel)
        finally:
            channel.close()
            assert router.stop() == 0, router.log()[-3000:]
