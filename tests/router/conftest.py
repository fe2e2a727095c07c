"""One router stack per module (tests/fixtures/router_stack.py): the gateway in this process,
the router as a real process, llama-server for the offline SmolLM2 GGUF, the fake teacher."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.router_stack import Stack, run_router_stack
from tests.fixtures.s3_server import s3_server  # noqa: F401 - pytest fixture

# Settings that let the tests see changes at once rather than after production's intervals.
_TEST_ENV = {
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
            run_router_stack(home, s3_server, fake, teacher_key, router_env=_TEST_ENV) as running:
        yield running
