"""Alias routing and progressive promotion in the spec layer: bounds named by field, and the
sticky pick every router replica shares."""

from __future__ import annotations

import random

import pytest

from distill.v1 import common_pb2, gateway_pb2
from services.common.errors import InvalidArgument
from services.common.specs.distill import distill_plan
from services.common.specs.routing import choose, progressive, routing, sticky_point

TEACHER = gateway_pb2.AliasTarget(teacher=common_pb2.ModelSpec(model="gpt-4o-mini"))
STUDENT = gateway_pb2.AliasTarget(job="jobs/abc")
LENGTH = common_pb2.JudgeSpec(length=common_pb2.LengthJudge(max_chars=10))
REFERENCE = common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
    mode=common_pb2.MATCH_MODE_LABEL))


def split(percent: int, **kw) -> gateway_pb2.AliasRouting:
    return gateway_pb2.AliasRouting(
        canary=[gateway_pb2.WeightedTarget(target=STUDENT, percent=percent)], **kw)


@pytest.mark.parametrize(("msg", "error"), [
    (split(0), r"routing.canary\[0\].percent: must be in \[1, 100\], got 0"),
    (gateway_pb2.AliasRouting(canary=[gateway_pb2.WeightedTarget(target=STUDENT, percent=60),
                                      gateway_pb2.WeightedTarget(target=TEACHER, percent=50)]),
     "routing.canary: the percents add up to 110, over 100"),
    (gateway_pb2.AliasRouting(shadows=[gateway_pb2.AliasTarget()]),
     r"routing.shadows\[0\]: set job, teacher or upstream"),
    (gateway_pb2.AliasRouting(validator=gateway_pb2.AliasValidator()),
     "routing.validator: set judge, labels or max_latency_seconds"),
    (gateway_pb2.AliasRouting(validator=gateway_pb2.AliasValidator(
        judge=common_pb2.JudgeSpec(llm=common_pb2.LlmJudge()))),
     "routing.validator.judge: a validator runs on every request, so only regex"),
    (gateway_pb2.AliasRouting(validator=gateway_pb2.AliasValidator(
        judge=common_pb2.JudgeSpec(regex=common_pb2.RegexJudge(pattern="(a)\\1")))),
     r"routing.validator.judge.regex.pattern: invalid regex"),
    (gateway_pb2.AliasRouting(validator=gateway_pb2.AliasValidator(labels=["ok", " "])),
     "routing.validator.labels: a label is empty"),
    (gateway_pb2.AliasRouting(capture=gateway_pb2.TraceCapture(redact=["phones"])),
     r"routing.capture.builtins\[0\]: 'phones' is not one of"),
    (gateway_pb2.AliasRouting(judge=gateway_pb2.LiveJudge()),
     "routing.judge.judge: set one of llm, reference"),
    (gateway_pb2.AliasRouting(judge=gateway_pb2.LiveJudge(judge=LENGTH, sample_rate=1.5)),
     r"routing.judge.sample_rate: must be in \(0, 1\], got 1.5"),
    (gateway_pb2.AliasRouting(judge=gateway_pb2.LiveJudge(judge=LENGTH, sample_rate=-0.1)),
     r"routing.judge.sample_rate: must be in \(0, 1\], got -0.1"),
    (gateway_pb2.AliasRouting(judge=gateway_pb2.LiveJudge(judge=common_pb2.JudgeSpec(
        composite=common_pb2.CompositeJudge(components=[
            common_pb2.WeightedJudge(judge=REFERENCE, weight=1),
            common_pb2.WeightedJudge(judge=common_pb2.JudgeSpec(llm=common_pb2.LlmJudge()),
                                     weight=1)])))),
     "routing.judge.judge: a live judge cannot combine an LLM judge with a reference judge"),
])
def test_bad_routing_names_the_field(msg, error):
    with pytest.raises(InvalidArgument, match=error):
        routing(msg)


def test_good_routing_reads_every_part():
    rules = routing(split(5, shadows=[TEACHER], validator=gateway_pb2.AliasValidator(
        labels=["Positive", "negative"], max_latency_seconds=2,
        fallback=common_pb2.ModelSpec(model="gpt-4o")),
        capture=gateway_pb2.TraceCapture(redact=["emails"])))
    assert rules.canary == ((STUDENT, 5),) and rules.shadows == (TEACHER,)
    assert rules.validator.labels == {"positive", "negative"}
    assert rules.validator.fallback.model == "gpt-4o" and rules.capture
    assert rules.redactor("write to a@b.example") == "write to [redacted:emails]"


def test_a_live_judge_samples_every_request_unless_told_and_knows_when_it_needs_a_reference():
    every = routing(gateway_pb2.AliasRouting(judge=gateway_pb2.LiveJudge(judge=LENGTH))).judge
    assert every.sample_rate == 1.0 and not every.needs_reference
    llm = routing(gateway_pb2.AliasRouting(judge=gateway_pb2.LiveJudge(
        judge=common_pb2.JudgeSpec(llm=common_pb2.LlmJudge()), sample_rate=0.05))).judge
    assert llm.sample_rate == 0.05 and not llm.needs_reference
    gated = routing(gateway_pb2.AliasRouting(judge=gateway_pb2.LiveJudge(
        judge=common_pb2.JudgeSpec(composite=common_pb2.CompositeJudge(components=[
            common_pb2.WeightedJudge(judge=REFERENCE, weight=1),
            common_pb2.WeightedJudge(judge=LENGTH, weight=0, gate=True,
                                     gate_min_score=10)]))))).judge
    assert gated.needs_reference  # a reference judge anywhere in a composite needs one
    assert routing(gateway_pb2.AliasRouting()).judge is None


def test_a_sticky_key_keeps_its_target_and_growing_the_canary_keeps_the_first_users():
    at5, at25 = routing(split(5)), routing(split(25))
    rng = random.Random(0)
    users = [f"user-{i}" for i in range(2000)]
    first = {u for u in users if choose(at5, TEACHER, "bot", u, rng) == STUDENT}
    again = {u for u in users if choose(at5, TEACHER, "bot", u, rng) == STUDENT}
    grown = {u for u in users if choose(at25, TEACHER, "bot", u, rng) == STUDENT}
    assert first == again and first < grown  # same users each time; the 5 % stay in the 25 %
    assert 60 <= len(first) <= 140 and 400 <= len(grown) <= 600  # (a fixed hash: no chance)
    assert all(0 <= sticky_point("bot", u) < 100 for u in users)
    assert sticky_point("bot", "u") != sticky_point("other", "u")  # aliases split independently


def test_progressive_defaults_and_bounds():
    off = progressive(gateway_pb2.ProgressivePromotion())
    assert off is None
    plan = progressive(gateway_pb2.ProgressivePromotion(enabled=True))
    assert plan.steps == (0, 5, 25, 50, 100) and plan.window_requests == 200
    assert plan.min_ratio == 0.95
    assert progressive(gateway_pb2.ProgressivePromotion(
        enabled=True, skip_shadow=True, canary_percents=[10, 100])).steps == (10, 100)
    with pytest.raises(InvalidArgument, match=r"spec\.progressive\.canary_percents: strictly"):
        progressive(gateway_pb2.ProgressivePromotion(enabled=True, canary_percents=[50, 10, 100]))
    with pytest.raises(InvalidArgument, match=r"canary_percents.*ending at 100"):
        progressive(gateway_pb2.ProgressivePromotion(enabled=True, canary_percents=[5, 50]))
    with pytest.raises(InvalidArgument, match=r"spec\.progressive\.min_ratio: must be in"):
        progressive(gateway_pb2.ProgressivePromotion(enabled=True, min_ratio=-1))


def test_a_job_promoted_step_by_step_needs_an_alias():
    spec = gateway_pb2.DistillSpec(
        dataset=common_pb2.ArtifactRef(uri="file:///d.jsonl"), student_model="smollm2-135m",
        teacher=common_pb2.ModelSpec(model="gpt-4o-mini"),
        progressive=gateway_pb2.ProgressivePromotion(enabled=True))
    spec.judge.judge.llm.SetInParent()
    with pytest.raises(InvalidArgument, match=r"spec\.progressive: needs promote_alias"):
        distill_plan(spec)
    spec.promote_alias = "bot"
    assert distill_plan(spec).progressive.steps == (0, 5, 25, 50, 100)


def test_a_validator_checks_labels_the_programmatic_judge_and_latency():
    schema = '{"type": "object", "required": ["label"]}'
    rules = routing(gateway_pb2.AliasRouting(validator=gateway_pb2.AliasValidator(
        labels=["Positive", "negative"], max_latency_seconds=1.5,
        judge=common_pb2.JudgeSpec(composite=common_pb2.CompositeJudge(components=[
            common_pb2.WeightedJudge(weight=1, judge=common_pb2.JudgeSpec(
                length=common_pb2.LengthJudge(max_chars=40))),
            common_pb2.WeightedJudge(weight=1, judge=common_pb2.JudgeSpec(
                regex=common_pb2.RegexJudge(pattern=r"^\w+\.?$", full_match=True)))])))))
    check = rules.validator.check
    assert check("Positive.", 0.2) == (True, "passed")
    ok, why = check("neutral", 0.2)
    assert not ok and why == "label 'neutral' is not one of the labels"
    ok, why = check("negative, clearly negative and nothing else at all here", 3.0)
    assert not ok and why.startswith("took 3.00 s, over the 1.5 s limit; ")
    assert "chars, bounds [-, 40]" in why and "regex /^\\w+\\.?$/" in why
    json_rules = routing(gateway_pb2.AliasRouting(validator=gateway_pb2.AliasValidator(
        judge=common_pb2.JudgeSpec(json_schema=common_pb2.JsonSchemaJudge(schema_json=schema)))))
    assert json_rules.validator.check('```json\n{"label": "x"}\n```', 0)[0]
    assert json_rules.validator.check('{"other": 1}', 0) == (
        False, "schema violation at (root): 'label' is a required property")
