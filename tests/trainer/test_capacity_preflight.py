"""Capacity, memory preflight and backend selection: the checks made before any training."""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition, ResourceExhausted
from services.trainer import backends, preflight
from services.trainer.capacity import Capacity
from services.trainer.config import BondConfig, TrainConfig


def test_capacity_refuses_beyond_its_size_and_frees_on_release():
    capacity = Capacity(2)
    a = capacity.acquire("a")
    with capacity.acquire("b"):
        assert capacity.active_job_ids() == ["a", "b"]
        with pytest.raises(ResourceExhausted, match="2 of 2"):
            capacity.acquire("c")
    with pytest.raises(FailedPrecondition, match="already training"):
        capacity.acquire("a")
    a.release()
    a.release()  # idempotent
    assert capacity.active_job_ids() == []
    capacity.acquire("c")


def test_preflight_estimate_grows_with_size_and_follows_the_table_on_cuda(tiny_llama_dir):
    shape = preflight.model_shape(tiny_llama_dir)
    assert 3_000_000 < shape.parameters < 4_000_000 and shape.vocab == 49152
    config = TrainConfig(job_id="j", student_model="tiny", batch_size=2, max_seq_length=64)
    small = preflight.estimate_gb(shape, config, "trl", "cpu")
    assert 0.5 < small < 1.0
    bigger = TrainConfig(job_id="j", student_model="tiny", batch_size=16, max_seq_length=2048)
    assert preflight.estimate_gb(shape, bigger, "trl", "cpu") > small + 5
    sft = TrainConfig(job_id="j", student_model="tiny", batch_size=16, max_seq_length=2048,
                      bond=BondConfig(beta=0.0, gamma=0.0))
    assert preflight.estimate_gb(shape, sft, "trl", "cpu") < preflight.estimate_gb(
        shape, bigger, "trl", "cpu")
    # The seed's table for 4-bit LoRA (0.6-1B: 8 GB, 3B: 16 GB, 8B: 24 GB) is the floor on CUDA.
    for params, gb in ((800_000_000, 8), (3_000_000_000, 16), (8_000_000_000, 24)):
        big = preflight.ModelShape(params, 2048, 16, 8192, 32000)
        assert preflight.estimate_gb(big, config, "unsloth", "cuda", load_in_4bit=True) >= gb


def test_preflight_refuses_too_little_memory(tiny_llama_dir):
    config = TrainConfig(job_id="j", student_model="tiny", batch_size=2, max_seq_length=64)
    estimate = preflight.check(tiny_llama_dir, config, "trl", "cpu")
    assert estimate.fits and estimate.available_gb > 1
    with pytest.raises(FailedPrecondition, match=r"needs about 0\.\d GB of RAM.*has 0\.1 GB"):
        preflight.check(tiny_llama_dir, config, "trl", "cpu", memory_gb=0.1)


@pytest.mark.skipif(backends.cuda_available(), reason="checks the CPU-only selection")
def test_backend_selection_without_cuda():
    assert backends.resolve_backend_name("auto") == "trl"
    assert backends.resolve_backend_name("trl") == "trl"
    with pytest.raises(FailedPrecondition, match=r"UNSLOTH needs a CUDA GPU.*no CUDA GPU"):
        backends.resolve_backend_name("unsloth")
    assert backends.available_backends() == ["trl"]
    assert backends.backend_device_type("trl") == "cpu"


def test_auto_prefers_unsloth_when_it_imports(monkeypatch):
    monkeypatch.setattr(backends, "unsloth_importable", lambda: None)
    assert backends.resolve_backend_name("auto") == "unsloth"
    assert backends.resolve_backend_name("trl") == "trl"  # an explicit setting overrides
    monkeypatch.setattr(backends, "unsloth_importable", lambda: "`import unsloth` failed: X")
    assert backends.resolve_backend_name("auto") == "trl"
    with pytest.raises(FailedPrecondition, match="import unsloth"):
        backends.resolve_backend_name("unsloth")
