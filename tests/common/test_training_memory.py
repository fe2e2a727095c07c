"""The training memory model: each input moves the peak the way the step's memory does."""

from __future__ import annotations

from dataclasses import replace

from services.common.training_memory import (
    CHUNK_BUFFERS,
    CHUNK_ELEMENTS,
    GB,
    OVERHEAD_GB,
    STUDENT_SHAPES,
    ModelShape,
    TrainingJob,
    how_to_fit,
    largest_batch,
    peak_memory,
)

LLAMA_1B = STUDENT_SHAPES["llama-3.2-1b"]
JOB = TrainingJob(sequence_length=1024, batch_size=4, lora_r=16, beta=0.5, gamma=0.1,
                  precision="bfloat16", device="cuda")


def test_peak_grows_with_sequence_batch_rank_and_the_preference_term():
    base = peak_memory(LLAMA_1B, JOB).total_gb
    assert peak_memory(LLAMA_1B, replace(JOB, sequence_length=2048)).total_gb > base
    assert peak_memory(LLAMA_1B, replace(JOB, batch_size=8)).total_gb > base
    assert peak_memory(LLAMA_1B, replace(JOB, lora_r=64)).total_gb > base
    # Without the preference term the rejected answers are not trained on: half the sequences.
    sft = peak_memory(LLAMA_1B, replace(JOB, beta=0.0, gamma=0.0))
    assert sft.activations == peak_memory(LLAMA_1B, JOB).activations / 2


def test_precision_and_checkpointing_shrink_weights_and_activations():
    bf16 = peak_memory(LLAMA_1B, JOB)
    four = peak_memory(LLAMA_1B, replace(JOB, precision="4bit"))
    assert four.weights < bf16.weights / 3
    ckpt = peak_memory(LLAMA_1B, replace(JOB, gradient_checkpointing=True))
    assert ckpt.activations < bf16.activations / 3
    assert peak_memory(LLAMA_1B, replace(JOB, precision="float32", device="cpu")).weights == \
        2 * bf16.weights


def test_the_tensors_are_the_total_less_the_runtime_and_the_runtime_is_the_devices():
    # benchmarks/trainer_step.py sets the tensors against torch.cuda.max_memory_allocated, which
    # never sees the CUDA context: the overhead must stay out of them and in the total.
    for device in ("cuda", "cpu"):
        peak = peak_memory(LLAMA_1B, replace(JOB, device=device))
        assert peak.overhead == OVERHEAD_GB[device] * GB
        assert abs(peak.total_gb - peak.tensors_gb - OVERHEAD_GB[device]) <= 0.011
        assert peak.tensors_gb * GB >= peak.weights + peak.activations


def test_the_chunked_loss_does_not_grow_with_the_vocabulary():
    small = replace(LLAMA_1B, vocab=32_000)
    chunked = peak_memory(LLAMA_1B, JOB).loss
    assert chunked == peak_memory(small, JOB).loss
    assert chunked <= (CHUNK_BUFFERS * CHUNK_ELEMENTS + 2 * 8 * 1024 * 2048) * 4
    full = peak_memory(LLAMA_1B, replace(JOB, chunked_loss=False)).loss
    # 8 sequences x 1024 tokens x 128,256 float32 logits, six times: about 25 GB.
    assert full > 20 * GB and full > 50 * chunked


def test_the_seeds_students_fit_an_8_gb_gpu_on_a_4bit_base():
    four = replace(JOB, precision="4bit", gradient_checkpointing=True)
    for name in ("qwen3-0.6b", "llama-3.2-1b"):
        assert peak_memory(STUDENT_SHAPES[name], four).total_gb < 8, name


def test_largest_batch_and_what_would_make_a_job_fit():
    peak_one = peak_memory(LLAMA_1B, replace(JOB, batch_size=1)).total_gb
    peak_two = peak_memory(LLAMA_1B, replace(JOB, batch_size=2)).total_gb
    assert largest_batch(LLAMA_1B, JOB, (peak_one + peak_two) / 2) == 1
    assert largest_batch(LLAMA_1B, JOB, 1000) == JOB.batch_size
    assert largest_batch(LLAMA_1B, JOB, peak_one - 0.1) == 0
    advice = how_to_fit(LLAMA_1B, JOB, peak_one - 0.1)
    assert "max_seq_length 512 or less" in advice and "4-bit base" in advice
    assert advice.endswith("a smaller student")
    tiny_gpu = how_to_fit(ModelShape(8_000_000_000, 4096, 32, 14_336, 128_256), JOB, 1.0)
    assert tiny_gpu == "a smaller student"
