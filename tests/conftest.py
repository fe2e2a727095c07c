"""Fixtures for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.ports import held_port


@pytest.fixture(scope="session", autouse=True)
def stages_nobody_serves() -> Iterator[str]:
    """A gateway a test builds without stage addresses would dial the defaults (127.0.0.1:
    50052-50055), where a `distill up`, a demo or another checkout's suite may be answering: the
    test would then depend on, and poll, a stranger. Such gateways get a port held for this
    session instead, where nothing listens, so every connection is refused at once. A test or
    suite that names its stages (explicit settings, a child's env) is not affected."""
    with held_port() as port, pytest.MonkeyPatch.context() as env:
        for stage in ("generator", "judge", "trainer", "exporter"):
            env.setenv(f"DISTILL_GATEWAY_{stage.upper()}_ADDRESS", f"127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
