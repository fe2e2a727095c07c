"""The estimate of a teacher committee (each member priced) and of prompt expansion (its
teacher calls counted, and the expanded prompts in generation, judging and training)."""

from __future__ import annotations

import pytest

from distill.v1 import common_pb2, gateway_pb2
from services.common.datasets import parse_jsonl
from services.common.models import price_for
from services.common.specs.distill import distill_plan
from services.gateway.estimate import estimate
from tests.gateway.test_estimate import line, spec

SEEDS = parse_jsonl(b"".join(
    b'{"prompt": "Classify the sentiment of this review: product number %d works well.", '
    b'"response": "positive"}\n' % i for i in range(10)))


def committee_spec(**kw) -> gateway_pb2.DistillSpec:
    s = gateway_pb2.DistillSpec(
        dataset=common_pb2.ArtifactRef(uri="file:///unused.jsonl"), student_model="smollm2-135m",
        committee=[common_pb2.CommitteeMember(teacher=common_pb2.ModelSpec(
            model="gpt-4o-mini", max_tokens=64), n_samples=3),
            common_pb2.CommitteeMember(teacher=common_pb2.ModelSpec(
                model="gpt-4o", max_tokens=64), n_samples=1)], **kw)
    s.judge.judge.CopyFrom(common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge()))
    return s


def test_each_committee_member_is_priced_at_its_own_rate_for_its_own_samples():
    result = estimate(distill_plan(committee_spec()), SEEDS)
    mini = line(result, "teacher gpt-4o-mini", "output tokens")
    big = line(result, "teacher gpt-4o", "output tokens")
    assert mini.quantity == 3 * big.quantity  # 3 samples against 1, the same prompts
    assert mini.usd_high == pytest.approx(price_for("gpt-4o-mini").cost_usd(0, int(mini.quantity)))
    assert big.usd_high == pytest.approx(price_for("gpt-4o").cost_usd(0, int(big.quantity)))
    assert result.teacher_output_tokens == mini.quantity + big.quantity
    assert not [x for x in result.breakdown if x.item == "teacher"]
    assert any("committee of 2 teachers" in a for a in result.assumptions)


def test_a_single_teacher_keeps_its_plain_lines():
    result = estimate(spec(), SEEDS)
    assert {x.item for x in result.breakdown if x.item.startswith("teacher")} == {"teacher"}


def test_expansion_adds_its_calls_and_prices_the_expanded_prompts():
    plain = estimate(spec(), SEEDS)
    expanded = estimate(spec(expansion=gateway_pb2.ExpansionSettings(target_prompts=100)), SEEDS)
    calls = line(expanded, "expansion", "teacher calls")
    seeds = 9  # 10 prompts less the held-out one
    # high: every one of the 4 rounds asks for all 91 missing prompts and half again
    assert calls.quantity == 4 * 137
    assert 0 < calls.usd_low < calls.usd_high
    # generation now answers 100 prompts instead of 9
    assert line(expanded, "teacher", "output tokens").quantity == pytest.approx(
        line(plain, "teacher", "output tokens").quantity * 100 / seeds)
    assert any(f"{seeds} seed prompts grown to 100" in a for a in expanded.assumptions)
    assert expanded.total_usd_high > plain.total_usd_high


def test_an_llm_judge_filter_costs_more():
    judge = common_pb2.JudgeSpec(llm=common_pb2.LlmJudge(model=common_pb2.ModelSpec(
        model="gpt-4o-mini")))
    bare = estimate(spec(expansion=gateway_pb2.ExpansionSettings(target_prompts=50)), SEEDS)
    judged = estimate(spec(expansion=gateway_pb2.ExpansionSettings(
        target_prompts=50, judge=judge)), SEEDS)
    assert line(judged, "expansion", "teacher calls").usd_high > line(
        bare, "expansion", "teacher calls").usd_high
