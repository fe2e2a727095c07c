"""The compose health check: `python -m services.common.health_probe HOST:PORT` against a real
gRPC server with the standard health service."""

from __future__ import annotations

import subprocess
import sys
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common import health_probe
from tests.fixtures.ports import held_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def health_server():
    """A gRPC server on loopback with grpc.health.v1; yields (address, servicer)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def test_serving_exits_0(health_server, capsys):
    address, servicer = health_server
    servicer.set("", SERVING)
    assert health_probe.main([address]) == 0
    assert capsys.readouterr().out.strip() == f"{address} SERVING"


def test_not_serving_exits_1(health_server, capsys):
    address, servicer = health_server
    servicer.set("", NOT_SERVING)  # what serve() reports after SIGTERM
    assert health_probe.main([address]) == 1
    assert capsys.readouterr().out.strip() == f"{address} NOT_SERVING"


def test_nothing_listening_exits_1(capsys):
    with held_port() as port:  # bound, not listening: refused, and no one else takes it
        address = f"127.0.0.1:{port}"
        assert health_probe.main([address, "--timeout", "0.5"]) == 1
    assert capsys.readouterr().out.strip() == f"{address} UNREACHABLE"


def test_runs_as_module(health_server):
    """The exact command deploy/compose.yaml runs, as a child process."""
    address, servicer = health_server
    servicer.set("", SERVING)
    ok = subprocess.run([sys.executable, "-m", "services.common.health_probe", address],
                        capture_output=True, text=True, timeout=60, check=False)
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{address} SERVING"), ok.stderr
    servicer.set("", NOT_SERVING)
    bad = subprocess.run([sys.executable, "-m", "services.common.health_probe", address],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1, bad.stderr
