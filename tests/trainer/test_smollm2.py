"""A few steps of the real student, SmolLM2-135M-Instruct (dequantised from the packaged GGUF),
through the gRPC stream. Slow (a 540 MB float32 model on CPU) but part of `make test`."""

from __future__ import annotations

import math

import grpc
import pytest

from distill.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from services.common.server import start
from services.common.storage import LocalStore
from services.trainer.server import build
from services.trainer.settings import TrainerSettings
from tests.trainer.helpers import cache_dir, curated_rows, put_curated


@pytest.mark.slow
async def test_two_bond_steps_of_smollm2(tmp_path):
    store = LocalStore(tmp_path / "store")
    curated = put_curated(store, curated_rows(4), key="jobs/smol/curated.jsonl")
    settings = TrainerSettings(port=0, grace_seconds=0, store_url=f"file:{tmp_path}/store",
                               cache_dir=cache_dir())
    server = await start(settings, build(settings))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            request = trainer_pb2.TrainRequest(
                job_id="smol",
                curated=common_pb2.ArtifactRef(uri=curated.uri, sha256=curated.sha256),
                student_model="smollm2-135m",
                lora=common_pb2.LoraSettings(r=8, alpha=16),
                training=common_pb2.TrainingSettings(max_steps=2, batch_size=1,
                                                     max_seq_length=32, learning_rate=1e-3,
                                                     checkpoint_interval=2),
            )
            events = [e async for e in stub.Train(request, timeout=600)]
    finally:
        await server.stop()

    started = events[0].started
    assert started.backend == "trl" and started.device == "cpu"
    assert 130e6 < started.total_parameters < 140e6
    steps = [e.step for e in events if e.HasField("step")]
    assert [s.step for s in steps] == [1, 2]
    for s in steps:
        assert math.isfinite(s.loss) and 0 < s.sft_loss < 20
    # LoRA starts as the identity: the first step sees KL 0 and log 2 where a pair exists.
    assert abs(steps[0].kl_loss) < 1e-5
    assert steps[0].preference_loss in (0.0, pytest.approx(math.log(2), abs=1e-4))
    finished = events[-1].finished
    assert finished.steps == 2 and finished.adapter.uri.endswith("jobs/smol/adapter/")
    keys = set(store.list("jobs/smol/adapter/"))
    assert {"jobs/smol/adapter/adapter_model.safetensors",
            "jobs/smol/adapter/adapter_config.json"} <= keys
