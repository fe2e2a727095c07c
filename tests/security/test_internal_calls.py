"""Issue 19, item 3: the stage services answer only the gateway's internal credential, do not
serve a non-loopback address without one, and a call for one job touches no other job's
artifacts. Real services over gRPC on loopback, the real file store."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest

from distill.v1 import (
    common_pb2,
    exporter_pb2,
    exporter_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    judge_pb2,
    judge_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from services.common.errors import StartupRefused
from services.common.storage import LocalStore
from services.exporter.server import build as build_exporter
from services.exporter.settings import ExporterSettings
from services.generator.server import build as build_generator
from services.generator.settings import GeneratorSettings
from services.judge.server import build as build_judge
from services.judge.settings import JudgeSettings
from services.trainer.server import build as build_trainer
from services.trainer.settings import TrainerSettings
from tests.fixtures.inprocess import serve_in_thread

# Every test here: a connection beyond loopback fails it (conftest.py).
pytestmark = pytest.mark.usefixtures("loopback_only")

REPO = Path(__file__).resolve().parents[2]
INTERNAL = "internal-" + "9f" * 16
USER = "user-token-of-a-caller"
STAGES = {
    "generator": (GeneratorSettings, build_generator, generator_pb2_grpc.GeneratorServiceStub,
                  lambda stub, md: list(stub.Generate(generator_pb2.GenerateRequest(),
                                                      metadata=md, timeout=30))),
    "judge": (JudgeSettings, build_judge, judge_pb2_grpc.JudgeServiceStub,
              lambda stub, md: list(stub.Judge(iter([judge_pb2.JudgeRequest()]), metadata=md,
                                               timeout=30))),
    "trainer": (TrainerSettings, build_trainer, trainer_pb2_grpc.TrainerServiceStub,
                lambda stub, md: list(stub.Train(trainer_pb2.TrainRequest(), metadata=md,
                                                 timeout=30))),
    "exporter": (ExporterSettings, build_exporter, exporter_pb2_grpc.ExporterServiceStub,
                 lambda stub, md: list(stub.Export(exporter_pb2.ExportRequest(), metadata=md,
                                                   timeout=30))),
}


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """serve(name, **settings) -> the address of that stage service, in process."""
    with ExitStack() as stack:
        def start(name: str, **overrides) -> str:
            settings_cls, build, _, _ = STAGES[name]
            settings = settings_cls(port=0, grace_seconds=0, internal_token=INTERNAL,
                                    auth_token=USER, store_url=f"file://{tmp_path / 'store'}",
                                    cache_dir=tmp_path / "cache", **overrides)
            return stack.enter_context(serve_in_thread(settings, lambda: build(settings)))
        yield start


def call(name: str, address: str, metadata: tuple = ()) -> grpc.RpcError:
    _, _, stub_cls, rpc = STAGES[name]
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as raised:
        rpc(stub_cls(channel), metadata)
    return raised.value


@pytest.mark.parametrize("name", list(STAGES))
def test_a_stage_answers_only_the_internal_credential(serve, name):
    address = serve(name)
    for metadata in ((), (("authorization", f"Bearer {USER}"),),
                     (("authorization", "Bearer " + INTERNAL[:-1]),)):
        assert call(name, address, metadata).code() == grpc.StatusCode.UNAUTHENTICATED
    # With it, the request itself is judged (an empty one is bad input).
    error = call(name, address, (("authorization", f"Bearer {INTERNAL}"),))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()


def test_a_stage_refuses_to_serve_beyond_loopback_without_the_credential(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DISTILL_STORE_URL": f"file://{tmp_path / 'store'}",
           "DISTILL_INTERNAL_TOKEN": ""}  # empty is unset, not a token anyone can send
    result = subprocess.run(
        [sys.executable, "-m", "services.exporter", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    assert "exporter refused to start" in result.stderr
    assert "DISTILL_INTERNAL_TOKEN" in result.stderr and "--insecure" in result.stderr


@pytest.mark.parametrize(("overrides", "refused"), [
    ({"host": "0.0.0.0"}, True),
    ({"host": "10.1.2.3"}, True),
    ({"host": "::"}, True),
    ({"host": "0.0.0.0", "internal_token": ""}, True),
    ({"host": "0.0.0.0", "internal_token": INTERNAL}, False),
    ({"host": "0.0.0.0", "insecure": True}, False),
    ({"host": "127.0.0.1"}, False),
    ({"host": "::1"}, False),
])
def test_the_bind_rule(overrides, refused):
    for settings_cls in (GeneratorSettings, JudgeSettings, TrainerSettings, ExporterSettings):
        settings = settings_cls(**overrides)
        if refused:
            with pytest.raises(StartupRefused, match="without authentication"):
                settings.refuse_unauthenticated_bind()
        else:
            settings.refuse_unauthenticated_bind()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_an_exporter_told_another_jobs_uris_refuses_and_touches_nothing(serve, tmp_path):
    """The reported attack: Export for one job with another job's adapter (or the other way
    round) deleted and replaced that job's outputs. Now PERMISSION_DENIED, nothing changed."""
    store = LocalStore(tmp_path / "store")
    for job in ("victim", "other"):
        store.put_bytes(f"jobs/{job}/adapter/adapter_config.json", b'{"r": 8}')
        store.put_bytes(f"jobs/{job}/gguf/model-q4_k_m.gguf", b"GGUF" + job.encode())
        store.put_bytes(f"jobs/{job}/manifest.json", b'{"job": "%s"}' % job.encode())
    before = snapshot(tmp_path / "store")
    address = serve("exporter")
    metadata = (("authorization", f"Bearer {INTERNAL}"),)
    with grpc.insecure_channel(address) as channel:
        stub = exporter_pb2_grpc.ExporterServiceStub(channel)
        for job_id, adapter_of in (("other", "victim"), ("victim", "other"),
                                   ("victim-eval", "other")):
            request = exporter_pb2.ExportRequest(
                job_id=job_id, base_model="smollm2-135m",
                adapter=common_pb2.ArtifactRef(uri=store.uri(f"jobs/{adapter_of}/adapter/")))
            with pytest.raises(grpc.RpcError) as raised:
                list(stub.Export(request, metadata=metadata, timeout=60))
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert f"outside jobs/{job_id}/" in raised.value.details()
    assert snapshot(tmp_path / "store") == before


def test_a_trainer_told_another_jobs_curated_set_refuses(serve, tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_bytes("jobs/victim/curated.jsonl", b'{"prompt": "secret", "chosen": "data"}\n')
    before = snapshot(tmp_path / "store")
    address = serve("trainer")
    request = trainer_pb2.TrainRequest(
        job_id="attacker", student_model="smollm2-135m",
        curated=common_pb2.ArtifactRef(uri=store.uri("jobs/victim/curated.jsonl")))
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as raised:
        list(trainer_pb2_grpc.TrainerServiceStub(channel).Train(
            request, metadata=(("authorization", f"Bearer {INTERNAL}"),), timeout=60))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, raised.value.details()
    assert "outside jobs/attacker/" in raised.value.details()
    assert snapshot(tmp_path / "store") == before
