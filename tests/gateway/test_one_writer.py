"""One gateway per job store: a second gateway on the same database refuses to start and says
why; a gateway killed outright does not block the next one."""

from __future__ import annotations

import signal

import grpc

from distill.local_suite import start_service
from distill.v1 import gateway_pb2, gateway_pb2_grpc
from tests.fixtures.processes import REPO, start_module


def _env(tmp_path) -> dict[str, str]:
    return {"DISTILL_GATEWAY_DB_PATH": str(tmp_path / "state" / "gateway.db"),
            "DISTILL_STORE_URL": f"file://{tmp_path / 'store'}", "DISTILL_METRICS_PORT": "0"}


def _list_jobs(address: str) -> gateway_pb2.ListJobsResponse:
    with grpc.insecure_channel(address) as channel:
        return gateway_pb2_grpc.GatewayServiceStub(channel).ListJobs(
            gateway_pb2.ListJobsRequest(), timeout=30)


def test_second_gateway_on_the_same_database_refuses_to_start(tmp_path):
    first = start_module("services.gateway", log_dir=tmp_path / "logs", env=_env(tmp_path))
    try:
        # port 0: it exits before serving, and nothing races for a port meanwhile
        second = start_service("services.gateway", 0, tmp_path / "logs",
                               _env(tmp_path), cwd=REPO)
        assert second.proc.wait(120) == 1  # it exits on its own, before serving
        log = second.log()
        assert "gateway refused to start: another gateway" in log
        assert f"pid {first.proc.pid}" in log and "gateway.db" in log, log
        _list_jobs(first.address)  # the first one serves on, untouched
    finally:
        assert first.stop() == 0
    # A gateway that stopped gracefully lets the next one start.
    after = start_module("services.gateway", log_dir=tmp_path / "logs", env=_env(tmp_path))
    assert after.stop() == 0


def test_a_killed_gateway_does_not_block_its_restart(tmp_path):
    first = start_module("services.gateway", log_dir=tmp_path / "logs", env=_env(tmp_path))
    first.proc.send_signal(signal.SIGKILL)
    assert first.proc.wait(120) == -signal.SIGKILL
    restarted = start_module("services.gateway", log_dir=tmp_path / "logs", env=_env(tmp_path))
    try:
        assert _list_jobs(restarted.address).jobs == []
    finally:
        assert restarted.stop() == 0
