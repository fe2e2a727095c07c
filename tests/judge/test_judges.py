"""Programmatic judges, the composite blend and its gates, and spec validation."""

from __future__ import annotations

import json

import pytest

from distill.v1 import common_pb2
from services.common.errors import InvalidArgument
from services.common.judging.build import build_judge
from services.common.specs.judge import judge_kind


def prompt(reference: str | None = None) -> common_pb2.Prompt:
    p = common_pb2.Prompt(id="p", messages=[common_pb2.ChatMessage(role=2, content="Classify")])
    if reference is not None:
        p.reference = reference
    return p


def spec(**kind) -> common_pb2.JudgeSpec:
    return common_pb2.JudgeSpec(**kind)


async def score(judge_spec, text, reference=None):
    return await build_judge(judge_kind(judge_spec), None).score(prompt(reference), text)


@pytest.mark.parametrize(
    ("mode", "text", "reference", "expected"),
    [
        (common_pb2.MATCH_MODE_EXACT, "positive", "positive", 10),
        (common_pb2.MATCH_MODE_EXACT, "Positive", "positive", 0),
        (common_pb2.MATCH_MODE_NORMALIZED, "  Positive. ", "positive", 10),
        (common_pb2.MATCH_MODE_NORMALIZED, "positive review", "positive", 0),
        (common_pb2.MATCH_MODE_LABEL, "Sentiment: **Positive** - it is upbeat", "positive", 10),
        (common_pb2.MATCH_MODE_LABEL, "The answer is negative.", "positive", 0),
        (common_pb2.MATCH_MODE_LABEL, "negative", "Negative", 10),
    ],
)
async def test_reference_judge(mode, text, reference, expected):
    result = await score(spec(reference=common_pb2.ReferenceJudge(mode=mode)), text, reference)
    assert result.value == expected


async def test_reference_judge_without_reference_is_an_error_not_a_score():
    result = await score(spec(reference=common_pb2.ReferenceJudge()), "x")
    assert result.value is None and "no reference" in result.error


async def test_regex_judge():
    judge = spec(regex=common_pb2.RegexJudge(pattern=r"\d{3}-\d{4}", full_match=True))
    assert (await score(judge, "555-1234")).value == 10
    assert (await score(judge, "call 555-1234")).value == 0
    search = spec(regex=common_pb2.RegexJudge(pattern=r"\d{3}-\d{4}"))
    assert (await score(search, "call 555-1234")).value == 10


async def test_regex_judge_runs_in_linear_time():
    """`^(a+)+$` backtracks exponentially in Python's `re` (seconds at 25 characters, doubling
    with each one); in RE2 it answers at once. pytest-timeout bounds the test."""
    judge = spec(regex=common_pb2.RegexJudge(pattern=r"^(a+)+$"))
    assert (await score(judge, "a" * 40 + "!")).value == 0
    assert (await score(judge, "a" * 40)).value == 10


async def test_json_schema_patterns_run_in_linear_time():
    schema = json.dumps({"type": "object",
                         "properties": {"word": {"type": "string", "pattern": "^(a+)+$"}},
                         "patternProperties": {"^(b+)+$": {"type": "integer"}}})
    judge = spec(json_schema=common_pb2.JsonSchemaJudge(schema_json=schema))
    refused = await score(judge, json.dumps({"word": "a" * 40 + "!"}))
    assert refused.value == 0 and "does not match" in refused.rationale
    assert (await score(judge, json.dumps({"word": "a" * 40}))).value == 10
    # patternProperties: a matching key's value must be an integer; a near miss is ignored.
    assert (await score(judge, json.dumps({"b" * 40: "x"}))).value == 0
    assert (await score(judge, json.dumps({"b" * 40 + "!": "x"}))).value == 10


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (spec(regex=common_pb2.RegexJudge(pattern=r"(a)\1")), "judge.regex.pattern"),
        (spec(regex=common_pb2.RegexJudge(pattern=r"foo(?=bar)")), "judge.regex.pattern"),
        (spec(json_schema=common_pb2.JsonSchemaJudge(schema_json=json.dumps(
            {"properties": {"x": {"type": "string", "pattern": r"(?<!a)b"}}}))),
         "judge.json_schema.schema_json at /properties/x/pattern"),
        (spec(json_schema=common_pb2.JsonSchemaJudge(schema_json=json.dumps(
            {"patternProperties": {r"(x)\1": {}}}))),
         "judge.json_schema.schema_json at /patternProperties/(x)\\1"),
        (spec(regex=common_pb2.RegexJudge(pattern=r"\pL{1000}" * 20)),
         "judge.regex.pattern: invalid regex: pattern too large"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_naming_the_field(bad, field):
    with pytest.raises(InvalidArgument) as raised:
        judge_kind(bad)
    message = str(raised.value)
    assert field in message and "patterns run in RE2: no backreferences or lookaround" in message


SCHEMA = json.dumps({"type": "object", "required": ["name", "age"],
                     "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}})


@pytest.mark.parametrize(
    ("text", "expected", "why"),
    [
        ('{"name": "Ada", "age": 36}', 10, "valid"),
        ('```json\n{"name": "Ada", "age": 36}\n```', 10, "valid"),
        ('{"name": "Ada", "age": "36"}', 0, "schema violation at age"),
        ('{"name": "Ada"', 0, "invalid JSON"),
        ("Sure! Here it is", 0, "invalid JSON"),
    ],
)
async def test_json_schema_judge(text, expected, why):
    result = await score(spec(json_schema=common_pb2.JsonSchemaJudge(schema_json=SCHEMA)), text)
    assert result.value == expected and why in result.rationale


async def test_length_judge():
    judge = spec(length=common_pb2.LengthJudge(min_chars=3, max_chars=5))
    assert [(await score(judge, t)).value for t in ("ab", "abc", "abcde", "abcdef")] == [0, 10,
                                                                                         10, 0]


def composite(*parts) -> common_pb2.JudgeSpec:
    return spec(composite=common_pb2.CompositeJudge(components=[
        common_pb2.WeightedJudge(judge=j, weight=w, gate=g, gate_min_score=m)
        for j, w, g, m in parts
    ]))


async def test_composite_blends_by_weight():
    judge = composite(
        (spec(length=common_pb2.LengthJudge(max_chars=100)), 3, False, 0),
        (spec(regex=common_pb2.RegexJudge(pattern="^yes")), 1, False, 0),
    )
    result = await score(judge, "no")
    assert result.value == pytest.approx(7.5)
    assert set(result.criteria) == {"length#0", "regex#1"}


async def test_composite_gate_wins():
    judge = composite(
        (spec(json_schema=common_pb2.JsonSchemaJudge(schema_json=SCHEMA)), 0, True, 10),
        (spec(length=common_pb2.LengthJudge(max_chars=1000)), 1, False, 0),
    )
    assert (await score(judge, '{"name": "Ada", "age": 1}')).value == 10
    failed = await score(judge, "not json at all")
    assert failed.value == 0 and "gate json_schema#0 failed" in failed.rationale


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (spec(), "judge: set one of"),
        (spec(regex=common_pb2.RegexJudge(pattern="(")), "judge.regex.pattern"),
        (spec(json_schema=common_pb2.JsonSchemaJudge(schema_json="{")), "schema_json: not JSON"),
        (spec(json_schema=common_pb2.JsonSchemaJudge(schema_json='{"type": 5}')),
         "not a valid JSON Schema"),
        (spec(length=common_pb2.LengthJudge(min_chars=9, max_chars=2)), "judge.length"),
        (composite(), "components: at least one"),
        (composite((spec(regex=common_pb2.RegexJudge(pattern="(")), 1, False, 0)),
         "judge.composite.components[0].judge.regex.pattern"),
        (composite((spec(length=common_pb2.LengthJudge()), -1, False, 0)),
         "components[0].weight"),
        (spec(llm=common_pb2.LlmJudge(criteria=[common_pb2.Criterion(name="Bad Name", weight=1)])),
         "judge.llm.criteria[0].name"),
    ],
)
def test_spec_errors_name_the_field(bad, field):
    with pytest.raises(InvalidArgument) as raised:
        judge_kind(bad)
    assert field in str(raised.value)
