"""Train requests: defaults, explicit zeros, and INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import pytest

from distill.v1 import common_pb2, trainer_pb2
from services.common.errors import InvalidArgument
from services.common.specs.train import train_config


def _request(**fields):
    base = {"job_id": "job-1", "curated": common_pb2.ArtifactRef(uri="file:///x/c.jsonl"),
            "student_model": "smollm2-135m"}
    base.update(fields)
    return trainer_pb2.TrainRequest(**base)


def test_defaults():
    config = train_config(_request())
    assert (config.bond.beta, config.bond.gamma, config.bond.tau) == (0.5, 0.1, 0.1)
    assert (config.lora.r, config.lora.alpha, config.lora.dropout) == (16, 32, 0.05)
    assert config.checkpoint_interval == 50 and config.max_steps is None
    assert config.total_steps(10) == 3  # one epoch of batches of 4
    assert config.backend is None and not config.resume


def test_explicit_zero_differs_from_unset():
    config = train_config(_request(
        bond=common_pb2.BondSettings(bond_beta=0.0, bond_gamma=0.0),
        training=common_pb2.TrainingSettings(max_steps=5, seed=0, warmup_ratio=0.0,
                                             backend=common_pb2.TRAINER_BACKEND_TRL)))
    assert (config.bond.beta, config.bond.gamma) == (0.0, 0.0)
    assert config.max_steps == 5 and config.total_steps(1000) == 5 and config.backend == "trl"


@pytest.mark.parametrize(("fields", "message"), [
    ({"job_id": ""}, "job_id: required"),
    ({"job_id": "../etc"}, "job_id: "),
    ({"curated": None}, "curated.uri: required"),
    ({"student_model": " "}, "student_model: required"),
    ({"lora": common_pb2.LoraSettings(r=0)}, "lora.r: must be in"),
    ({"lora": common_pb2.LoraSettings(dropout=1.0)}, "lora.dropout: must be in"),
    ({"lora": common_pb2.LoraSettings(target_modules=["q_proj", "a b"])},
     r"lora.target_modules\[1\]"),
    ({"bond": common_pb2.BondSettings(bond_beta=1.5)}, "bond.bond_beta: must be in"),
    ({"bond": common_pb2.BondSettings(bond_gamma=-1)}, "bond.bond_gamma: must be in"),
    ({"bond": common_pb2.BondSettings(preference_temperature=0)},
     "bond.preference_temperature: must be in"),
    ({"training": common_pb2.TrainingSettings(max_steps=3, epochs=1)}, "not both"),
    ({"training": common_pb2.TrainingSettings(max_steps=0)}, "training.max_steps"),
    ({"training": common_pb2.TrainingSettings(batch_size=0)}, "training.batch_size"),
    ({"training": common_pb2.TrainingSettings(learning_rate=float("nan"))},
     "training.learning_rate"),
    ({"training": common_pb2.TrainingSettings(checkpoint_interval=0)},
     "training.checkpoint_interval"),
])
def test_invalid_fields_are_named(fields, message):
    if fields.get("curated", "") is None:
        request = trainer_pb2.TrainRequest(job_id="j", student_model="m")
    else:
        request = _request(**fields)
    with pytest.raises(InvalidArgument, match=message):
        train_config(request)
