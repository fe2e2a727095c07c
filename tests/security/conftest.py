"""A gateway with an admin key and two projects' keys, over real gRPC on loopback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from distill.client import Distiller
from services.gateway.server import build
from services.gateway.settings import GatewaySettings
from tests.e2e.test_node_client import node  # noqa: F401 - the Node.js fixture, for test_tls
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


@dataclass
class Tls:
    ca_file: Path  # the throwaway CA clients trust
    cert_file: Path  # the server's chain, for 127.0.0.1 and localhost
    key_file: Path
    other_ca_file: Path  # a CA that signed nothing here


@pytest.fixture(scope="session")
def tls(tmp_path_factory) -> Tls:
    folder = tmp_path_factory.mktemp("tls")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = Tls(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                folder / "other-ca.pem")
    ca.cert_pem.write_to_path(str(paths.ca_file))
    other.cert_pem.write_to_path(str(paths.other_ca_file))
    server.private_key_pem.write_to_path(str(paths.key_file))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(paths.cert_file), append=True)
    return paths
