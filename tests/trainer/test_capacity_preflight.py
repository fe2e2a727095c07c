"""Capacity, memory preflight and backend selection: the checks made before any training."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.common import train_memory as preflight
from services.common.errors import FailedPrecondition, ResourceExhausted
from services.common.specs.train import TrainConfig
from services.common.training_memory import peak_memory
from services.trainer import backends
from services.trainer.capacity import Capacity


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


def test_preflight_uses_the_memory_model_for_the_models_shape(tiny_llama_dir):
    shape = preflight.model_shape(tiny_llama_dir)
    assert 3_000_000 < shape.parameters < 4_000_000 and shape.vocab == 49152
    config = TrainConfig(job_id="j", student_model="tiny", batch_size=2, max_seq_length=64)
    estimate = preflight.check(tiny_llama_dir, config, "trl", "cpu")
    job = preflight.training_job(config, "trl", "cpu")
    assert job.precision == "float32" and job.gradient_checkpointing and job.sequences == 4
    assert estimate.required_gb == peak_memory(shape, job).total_gb
    assert estimate.fits and estimate.config is config and estimate.lowered_from is None
    four = preflight.training_job(config, "unsloth", "cuda", load_in_4bit=True)
    assert four.precision == "4bit" and four.gradient_checkpointing


def test_preflight_lowers_the_batch_to_a_divisor_that_fits(tiny_llama_dir):
    config = TrainConfig(job_id="j", student_model="tiny", batch_size=6, max_seq_length=2048,
                         gradient_accumulation_steps=2)
    shape = preflight.model_shape(tiny_llama_dir)
    job = preflight.training_job(config, "trl", "cpu")
    # Room for batch 4 but not 5 or 6: the largest divisor of 6 that fits is 3.
    room = (peak_memory(shape, replace(job, batch_size=4)).total_gb
            + peak_memory(shape, replace(job, batch_size=5)).total_gb) / 2
    estimate = preflight.check(tiny_llama_dir, config, "trl", "cpu", memory_gb=room)
    assert estimate.lowered_from == 6
    assert estimate.config.batch_size == 3 and estimate.config.gradient_accumulation_steps == 4
    assert estimate.fits


def test_preflight_refuses_when_not_even_batch_1_fits(tiny_llama_dir):
    config = TrainConfig(job_id="j", student_model="tiny", batch_size=2, max_seq_length=64)
    with pytest.raises(FailedPrecondition, match=r"even batch_size 1 needs about 0\.\d GB of RAM "
                       r"\(weights .*has 0\.1 GB.*a smaller student"):
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
