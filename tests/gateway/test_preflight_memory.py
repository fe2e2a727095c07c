"""The gateway's preflight against the trainer's memory: a job that fits no batch size is refused
before any teacher call, naming what it needs and what would make it fit."""

from __future__ import annotations

import json
import re

import pytest

from distill.v1 import common_pb2, gateway_pb2, trainer_pb2
from services.common.errors import FailedPrecondition
from services.common.providers import EndpointPolicy
from services.common.storage import LocalStore
from services.gateway import preflight
from tests.fixtures.tiny_llama import tiny_llama_dir  # noqa: F401 - pytest fixture

ROWS = b"".join(json.dumps({"prompt": f"What is {i} + 1?", "response": str(i + 1)}).encode()
                + b"\n" for i in range(5))


def _spec(store: LocalStore, student: str, max_seq_length: int) -> gateway_pb2.DistillSpec:
    dataset = store.put_bytes("datasets/d.jsonl", ROWS).as_proto()
    spec = gateway_pb2.DistillSpec(dataset=dataset, student_model=student,
                                   teacher=common_pb2.ModelSpec(model="gpt-4o-mini"))
    spec.judge.judge.reference.mode = common_pb2.MATCH_MODE_LABEL
    spec.training.batch_size = 8
    spec.training.max_seq_length = max_seq_length
    return spec


def test_a_job_no_batch_size_fits_is_refused_with_its_need_and_the_way_out(
        tmp_path, monkeypatch, tiny_llama_dir):  # noqa: F811
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    store = LocalStore(tmp_path / "store")
    trainer = trainer_pb2.GetTrainerStatusResponse(device="cpu", memory_gb=2.0,
                                                   backends=["trl"])
    # 2 answers x 262,144 tokens do not fit 2 GB even for one prompt (checkpointed).
    with pytest.raises(FailedPrecondition) as raised:
        preflight.check(_spec(store, str(tiny_llama_dir), 262_144), store, tmp_path / "cache",
                        trainer=trainer, policy=EndpointPolicy())
    message = str(raised.value)
    assert "even batch_size 1 needs about" in message and "this trainer has 2.0 GB" in message
    assert message.endswith("a smaller student, or on a node with more memory")
    advised = int(re.search(r"max_seq_length (\d+) or less", message).group(1))
    assert advised < 262_144
    # The advice holds: at that length the job passes (with a lower batch size if need be).
    fits = preflight.check(_spec(store, str(tiny_llama_dir), advised), store,
                           tmp_path / "cache", trainer=trainer, policy=EndpointPolicy())
    assert fits.estimate.prompts == 5
