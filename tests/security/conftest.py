"""Fixtures of the security tests: a gateway with an admin key and two projects' keys, a
throwaway TLS CA, and `loopback_only`.

None of the attacks tried here may send a packet anywhere but loopback, even when the code
under test is wrong: a module that tries them uses `loopback_only`, which fails the test
instead of connecting when a socket is handed another address, and refuses real DNS lookups,
so none leaves the machine (tests hand the policy a resolver, or patch this one; the
estimate's tokenizer asks for its download host and falls back)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from distill.client import Distiller
from services.gateway.server import build
from services.gateway.settings import GatewaySettings

# pytest fixtures: the fake provider and an in-process generator; the whole suite (e2e).
from tests.e2e.conftest import s3_server, suite, tiny_llama_dir  # noqa: F401
from tests.e2e.test_node_client import node  # noqa: F401 - the Node.js fixture, for test_tls
from tests.fixtures.inprocess import serve_in_thread
from tests.generator.conftest import fake, generator_factory  # noqa: F401

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


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        try:
            return ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback
        except ValueError:
            return False  # a name: connecting to it would need DNS
    return isinstance(address, (str, bytes))  # a Unix socket path stays on this machine


@pytest.fixture
def loopback_only(monkeypatch) -> Iterator[list]:
    """Records and refuses every non-loopback connect; the test fails if there was one."""
    attempts: list = []
    connect, connect_ex, getaddrinfo = (socket.socket.connect, socket.socket.connect_ex,
                                        socket.getaddrinfo)

    def guarded(original):
        def call(self, address):
            if not _is_loopback(address):
                attempts.append(address)
                raise ConnectionRefusedError(f"test guard: no connection to {address!r}")
            return original(self, address)
        return call

    def local_lookup(host, *args, **kwargs):
        if host not in (None, "localhost") and not _is_loopback((host,)):
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no DNS lookup of {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", local_lookup)
    yield attempts
    assert not attempts, f"the code under test tried to leave loopback: {attempts}"
