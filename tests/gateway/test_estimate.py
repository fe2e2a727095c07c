"""Estimate from the actual dataset: tokens, cost ranges, training time, memory and advice."""

from __future__ import annotations

import pytest

from distill.v1 import common_pb2, gateway_pb2
from services.common.datasets import parse_jsonl
from services.common.specs.distill import distill_plan
from services.common.training_memory import (
    FORMULA,
    STUDENT_SHAPES,
    TrainingJob,
    peak_memory,
)
from services.gateway.estimate import estimate

ROWS = b"".join(
    b'{"prompt": "Classify the sentiment of this review: great product, works well.", '
    b'"response": "positive"}\n' for _ in range(100))
PROMPTS = parse_jsonl(ROWS)


def spec(teacher="gpt-4o-mini", student="smollm2-135m", judge=None, **kw):
    """The checked spec the estimate prices (the dataset is passed to it as prompts)."""
    if isinstance(teacher, str):
        teacher = common_pb2.ModelSpec(model=teacher, max_tokens=64)
    s = gateway_pb2.DistillSpec(dataset=common_pb2.ArtifactRef(uri="file:///unused.jsonl"),
                                teacher=teacher, student_model=student, n_samples=4, **kw)
    s.judge.judge.CopyFrom(judge or common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge()))
    return distill_plan(s)


def line(result, item, unit):
    return next(x for x in result.breakdown if x.item == item and x.unit == unit)


def test_openai_teacher_counts_with_its_own_tokenizer():
    hello = parse_jsonl(b'{"prompt": "hello world", "response": "hi"}\n' * 10)
    # o200k_base encodes "hello world" as [24912, 2375]: 2 tokens (4 characters per token
    # would say 3); plus 4 per message, times 4 samples, times 10 prompts (none held out).
    no_eval = gateway_pb2.EvalSettings(holdout_fraction=0)
    assert estimate(spec(eval=no_eval), hello).teacher_input_tokens == (2 + 4) * 4 * 10
    result = estimate(spec(), PROMPTS)
    assert result.prompts == 100
    assert any("o200k_base" in a for a in result.assumptions)
    # the default split holds 10 prompts out of generation
    assert result.teacher_output_tokens == 64 * 4 * 90
    out = line(result, "teacher", "output tokens")
    assert out.usd_high == pytest.approx(64 * 4 * 90 * 0.60 / 1e6)  # gpt-4o-mini $0.60/M out
    assert out.usd_low < out.usd_high  # low uses the mean reference answer length
    assert result.total_usd_low <= result.total_usd_high


def test_batch_api_halves_the_api_cost():
    full, batch = estimate(spec(), PROMPTS), estimate(spec(), PROMPTS, batch_api=True)
    assert line(batch, "teacher", "input tokens").usd_high == pytest.approx(
        line(full, "teacher", "input tokens").usd_high / 2)


def test_other_teachers_use_a_stated_approximation():
    result = estimate(spec(teacher="claude-sonnet"), PROMPTS)
    assert any("characters per token" in a for a in result.assumptions)


def test_llm_judge_calls_and_cost_are_counted():
    result = estimate(spec(judge=common_pb2.JudgeSpec(llm=common_pb2.LlmJudge())), PROMPTS)
    assert result.judge_calls == 4 * 90 and result.judge_tokens > 0
    assert line(result, "judge", "tokens").usd_high > 0
    programmatic = estimate(spec(), PROMPTS)
    assert programmatic.judge_calls == 0 and not [x for x in programmatic.breakdown
                                                  if x.item == "judge"]


def test_training_hours_memory_and_advice():
    result = estimate(spec(task_type=gateway_pb2.TASK_TYPE_JSON_EXTRACTION), PROMPTS)
    assert result.training_tokens > 0
    assert 0 < result.gpu_hours_low < result.gpu_hours_high
    assert 0 < result.peak_vram_gb < 4  # SmolLM2-135M on a 4-bit base, from the memory model
    assert any("under the usual floor for json_extraction" in w for w in result.warnings)
    bigger = estimate(spec(student="llama-3.1-8b", task_type=gateway_pb2.TASK_TYPE_REASONING),
                      PROMPTS)
    assert bigger.peak_vram_gb > 5 and bigger.gpu_hours_high > result.gpu_hours_high
    assert not any("floor" in w for w in bigger.warnings)


def test_peak_vram_is_the_memory_models_figure_for_this_job():
    """The student's shape, the job's batch, LoRA rank and loss, and the longest prompt plus the
    longest answer (max_tokens) as the sequence length, capped by training.max_seq_length."""
    result = estimate(spec(student="llama-3.2-1b"), PROMPTS)
    longest = max(int(a.split("up to ")[1].split(" tokens")[0]) for a in result.assumptions
                  if a.startswith("peak VRAM"))
    job = TrainingJob(sequence_length=longest, batch_size=4, lora_r=16, beta=0.5, gamma=0.1,
                      precision="4bit", device="cuda", gradient_checkpointing=True)
    assert result.peak_vram_gb == peak_memory(STUDENT_SHAPES["llama-3.2-1b"], job).total_gb
    assert any(FORMULA in a for a in result.assumptions)
    base = spec(student="llama-3.2-1b", training=common_pb2.TrainingSettings(batch_size=16),
                lora=common_pb2.LoraSettings(r=64))
    assert estimate(base, PROMPTS).peak_vram_gb > result.peak_vram_gb
    trl = spec(student="llama-3.2-1b", training=common_pb2.TrainingSettings(
        backend=common_pb2.TRAINER_BACKEND_TRL))
    assert estimate(trl, PROMPTS).peak_vram_gb > result.peak_vram_gb
    short = spec(student="llama-3.2-1b",
                 training=common_pb2.TrainingSettings(max_seq_length=16))
    assert any("up to 16 tokens" in a for a in estimate(short, PROMPTS).assumptions)


def test_unknown_teacher_price_is_a_warning_not_an_error():
    custom = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="my-finetune",
                                  base_url="http://127.0.0.1:9/v1")
    result = estimate(spec(teacher=custom), PROMPTS)
    assert any("no price known for teacher" in w for w in result.warnings)


def test_evaluation_line_prices_the_held_out_answers_and_their_judging():
    llm = common_pb2.JudgeSpec(llm=common_pb2.LlmJudge())
    result = estimate(spec(judge=llm), PROMPTS)  # default: 10% of 100 prompts held out
    evaluation = line(result, "evaluation", "held-out prompts")
    assert evaluation.quantity == 10
    judge = line(result, "judge", "tokens")
    # one teacher answer per held-out prompt (64 tokens at most, $0.60/M) and three judged
    # answers, each priced like one of the 360 judged candidates of generation (90 training
    # prompts x 4 samples: the held-out prompts are not generated for)
    teacher_high = 10 * 64 * 0.60 / 1e6
    assert evaluation.usd_high == pytest.approx(
        teacher_high + 10 * (line(result, "teacher", "input tokens").usd_high / 360)
        + 30 * judge.usd_high / 360, rel=0.05)
    assert evaluation.usd_low < evaluation.usd_high
    assert result.total_usd_high == pytest.approx(sum(x.usd_high for x in result.breakdown))
    given = estimate(spec(judge=llm), PROMPTS, held_out=25)
    assert line(given, "evaluation", "held-out prompts").quantity == 25
    # a given held-out set leaves every dataset prompt to generation
    assert given.judge_calls == 4 * 100
    off = estimate(spec(judge=llm, eval=gateway_pb2.EvalSettings(holdout_fraction=0)), PROMPTS)
    assert not [x for x in off.breakdown if x.item == "evaluation"]
    assert "evaluation off" in " ".join(off.assumptions)


def test_the_split_is_the_jobs_split():
    """Generation is estimated on exactly the prompts the job will generate for."""
    from services.common.datasets import split_holdout

    rows = b"".join(b'{"prompt": "%s"}\n' % (b"word " * (i + 1)) for i in range(40))
    prompts = parse_jsonl(rows)
    settings = gateway_pb2.EvalSettings(holdout_fraction=0.25, seed=3)
    train, held = split_holdout(prompts, 0.25, seed=3)
    no_eval = estimate(spec(eval=gateway_pb2.EvalSettings(holdout_fraction=0)), train)
    result = estimate(spec(eval=settings), prompts)
    assert len(held) == 10 and result.prompts == 40
    assert result.teacher_input_tokens == no_eval.teacher_input_tokens
    assert line(result, "evaluation", "held-out prompts").quantity == 10
    assert any("count only the other 30 prompts" in a for a in result.assumptions)
