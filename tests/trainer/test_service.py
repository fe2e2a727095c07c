"""TrainerService over real gRPC: a few steps of the tiny Llama, errors, capacity, cancel."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest
from safetensors.torch import load_file

from distill.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from services.common.server import start
from services.common.specs.layout import TRAINING_LOG
from services.common.storage import LocalStore
from services.exporter import merge
from services.trainer import checkpoints
from services.trainer.server import build
from services.trainer.settings import TrainerSettings
from tests.trainer.helpers import cache_dir, curated_rows, put_curated


@pytest.fixture
async def trainer(tmp_path: Path):
    """Starts an in-process trainer; yields (stub, store, launch) where launch(**settings)
    restarts it with other settings."""
    running = []

    async def launch(**overrides):
        for server in running:
            await server.stop()
        running.clear()
        settings = TrainerSettings(port=0, grace_seconds=0, store_url=f"file:{tmp_path}/store",
                                   cache_dir=cache_dir(), work_dir=tmp_path / "work",
                                   **overrides)
        server = await start(settings, build(settings))
        running.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        return trainer_pb2_grpc.TrainerServiceStub(channel)

    store = LocalStore(tmp_path / "store")
    stub = await launch()
    yield stub, store, launch
    for server in running:
        await server.stop()


def _request(model_dir, curated, job_id="job-1", **training) -> trainer_pb2.TrainRequest:
    settings = {"max_steps": 3, "batch_size": 2, "max_seq_length": 48, "checkpoint_interval": 2,
                "seed": 7, "backend": common_pb2.TRAINER_BACKEND_TRL}
    settings.update(training)
    return trainer_pb2.TrainRequest(
        job_id=job_id,
        curated=common_pb2.ArtifactRef(uri=curated.uri, sha256=curated.sha256),
        student_model=str(model_dir),
        lora=common_pb2.LoraSettings(r=4, alpha=8),
        training=common_pb2.TrainingSettings(**settings),
    )


async def test_a_few_steps_of_the_tiny_llama_through_the_stream(trainer, tiny_llama_dir,
                                                               tmp_path):
    stub, store, _ = trainer
    curated = put_curated(store, curated_rows(6))
    events = [e async for e in stub.Train(_request(tiny_llama_dir, curated), timeout=300)]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["started", "step", "step", "checkpoint", "step", "checkpoint", "finished"]

    started = events[0].started
    assert (started.backend, started.device, started.total_steps) == ("trl", "cpu", 3)
    assert 0 < started.trainable_parameters < started.total_parameters
    steps = [e.step for e in events if e.HasField("step")]
    assert [s.step for s in steps] == [1, 2, 3]
    for s in steps:
        assert s.loss > 0 and s.sft_loss > 0 and s.tokens_per_second > 0
        assert s.kl_loss >= -1e-6 and s.preference_loss >= 0
        assert s.total_steps == 3 and s.epoch > 0
    assert steps[0].preference_loss == pytest.approx(0.6931, abs=1e-3)  # log 2 at init
    assert steps[-1].eta_seconds == 0

    ckpt = events[3].checkpoint
    assert ckpt.step == 2 and ckpt.checkpoint.uri.endswith("jobs/job-1/checkpoints/step-2/")
    assert checkpoints.complete_steps(store, "job-1") == [2, 3]

    finished = events[-1].finished
    assert finished.steps == 3 and finished.tokens > 0 and finished.final_loss == steps[-1].loss
    assert finished.adapter.uri.endswith("jobs/job-1/adapter/")
    got = store.get_dir("jobs/job-1/adapter/", tmp_path / "adapter",
                        expected_sha256=finished.adapter.sha256)
    assert got.uri == finished.adapter.uri
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in k for k in weights)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()

    # The training log ships in the adapter folder (the job report plots it) and in checkpoints.
    log = _training_log(tmp_path / "adapter" / TRAINING_LOG)
    assert [row["step"] for row in log] == [1, 2, 3]
    for row, step in zip(log, steps, strict=True):
        for name in ("loss", "sft_loss", "preference_loss", "kl_loss", "learning_rate",
                     "tokens_per_second", "epoch"):
            assert row[name] == pytest.approx(getattr(step, name), rel=1e-9), name
        assert row["tokens"] > 0 and row["seconds"] > 0
    store.get_dir("jobs/job-1/checkpoints/step-2/", tmp_path / "step-2")
    assert [r["step"] for r in _training_log(tmp_path / "step-2" / TRAINING_LOG)] \
        == [1, 2]
    # ... and the exporter still takes the folder: no pickle, a LoRA adapter for the base model.
    merge.validate_adapter(tmp_path / "adapter", tiny_llama_dir)


def _training_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_validation_errors_come_before_any_work(trainer, tiny_llama_dir):
    stub, store, _ = trainer
    good = put_curated(store, curated_rows(2))
    bad = put_curated(store, [*curated_rows(1), "{oops"], key="jobs/job-1/bad.jsonl")
    cases = [
        (trainer_pb2.TrainRequest(job_id="j"), "curated.uri: required"),
        (_request(tiny_llama_dir, good, batch_size=0), "training.batch_size"),
        (_request(tiny_llama_dir, bad), "curated line 2: is not valid JSON"),
        (_request(tiny_llama_dir, common_pb2.ArtifactRef(uri=store.uri("jobs/job-1/none.jsonl"))),
         "curated.uri: no artifact"),
        (_request(Path("/nonexistent/model"), good), "student_model: no model folder"),
    ]
    for request, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            [e async for e in stub.Train(request, timeout=60)]
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        assert message in raised.value.details()
    # Nothing written but the inputs put there above (no checkpoint, no adapter).
    assert list(store.list("jobs/j/")) == []
    assert sorted(store.list("jobs/job-1/")) == ["jobs/job-1/bad.jsonl", "jobs/job-1/curated.jsonl"]


async def test_preflight_and_unsloth_without_cuda_fail_precondition(trainer, tiny_llama_dir):
    stub, store, launch = trainer
    curated = put_curated(store, curated_rows(2))
    unsloth = _request(tiny_llama_dir, curated, backend=common_pb2.TRAINER_BACKEND_UNSLOTH)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        [e async for e in stub.Train(unsloth, timeout=60)]
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "CUDA" in raised.value.details()

    stub = await launch(memory_gb=0.05)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        [e async for e in stub.Train(_request(tiny_llama_dir, curated), timeout=120)]
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "needs about" in raised.value.details() and "has 0.1 GB" in raised.value.details()
    assert checkpoints.newest_step(store, "job-1") is None  # refused before any training
    status = await stub.GetTrainerStatus(trainer_pb2.GetTrainerStatusRequest())
    assert status.memory_gb == 0.05 and list(status.active_job_ids) == []


async def test_capacity_status_and_cancel(trainer, tiny_llama_dir):
    stub, store, _ = trainer
    curated = put_curated(store, curated_rows(4), key="jobs/long/curated.jsonl")
    other = put_curated(store, curated_rows(4), key="jobs/other/curated.jsonl")
    status = await stub.GetTrainerStatus(trainer_pb2.GetTrainerStatusRequest())
    assert status.capacity == 1 and status.device == "cpu" and list(status.backends) == ["trl"]
    assert status.memory_gb > 1

    long = stub.Train(_request(tiny_llama_dir, curated, job_id="long", max_steps=10_000,
                               checkpoint_interval=1), timeout=300)
    seen = 0
    async for event in long:
        if event.HasField("checkpoint"):
            seen = event.checkpoint.step
            break
    status = await stub.GetTrainerStatus(trainer_pb2.GetTrainerStatusRequest())
    assert list(status.active_job_ids) == ["long"]

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        [e async for e in stub.Train(_request(tiny_llama_dir, other, job_id="other"),
                                     timeout=120)]
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at capacity" in raised.value.details()
    # at once, not after queueing: "long" (10,000 steps) still holds the slot
    status = await stub.GetTrainerStatus(trainer_pb2.GetTrainerStatusRequest())
    assert list(status.active_job_ids) == ["long"]

    long.cancel()
    deadline = time.monotonic() + 120  # ends a broken test only
    while time.monotonic() < deadline:
        status = await stub.GetTrainerStatus(trainer_pb2.GetTrainerStatusRequest())
        if not status.active_job_ids:
            break
        await asyncio.sleep(0.2)
    assert list(status.active_job_ids) == []
    # How many steps ran between `seen` and the cancel arriving depends on the machine's load;
    # that it stopped is checked next.
    newest = checkpoints.newest_step(store, "long")
    assert newest is not None and seen <= newest < 10_000
    await asyncio.sleep(1.0)  # negative check: the slot is free, so no step may follow
    assert checkpoints.newest_step(store, "long") == newest  # really stopped; checkpoint kept
    assert not list(store.list("jobs/long/adapter/"))
