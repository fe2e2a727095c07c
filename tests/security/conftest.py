"""A gateway with an admin key and two projects' keys, over real gRPC on loopback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from distill.client import Distiller
from services.gateway.server import build
from services.gateway.settings import GatewaySettings
from tests.fixtures.inprocess import serve_in_thread

ADMIN = "admin-key-for-tests-" + "a" * 24


@dataclass
class Projects:
    address: str
    tmp: Path
    admin: Distiller
    alpha: Distiller
    beta: Distiller
    alpha_key: str
    settings: GatewaySettings


@pytest.fixture
def projects(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 'store'}",
                               db_path=tmp_path / "gateway.db", admin_token=ADMIN)
    with serve_in_thread(settings, lambda: build(settings)) as address, \
            Distiller(address, token=ADMIN) as admin:
        alpha_key = admin.create_api_key("alpha", "alpha's CI").key
        beta_key = admin.create_api_key("beta").key
        with Distiller(address, token=alpha_key) as alpha, \
                Distiller(address, token=beta_key) as beta:
            yield Projects(address, tmp_path, admin, alpha, beta, alpha_key, settings)
