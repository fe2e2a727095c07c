"""JSON logs: what configure_logging lets through."""

from __future__ import annotations

import logging

import pytest

from services.common.logs import configure_logging


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpx2")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.parametrize("name", ["httpx", "httpx2"])
def test_http_clients_log_warnings_but_not_every_request(restored_logging, name):
    configure_logging("INFO", service="router")
    client = logging.getLogger(name)
    assert not client.isEnabledFor(logging.INFO)  # "HTTP Request: POST ..." per call
    assert client.isEnabledFor(logging.WARNING)
    assert logging.getLogger("services.router").isEnabledFor(logging.INFO)


def test_a_quieter_root_level_still_holds_for_http_clients(restored_logging):
    configure_logging("ERROR")
    assert not logging.getLogger("httpx2").isEnabledFor(logging.WARNING)
