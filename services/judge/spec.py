"""JudgeSpec (protobuf) → a ready judge, validated; errors name the field."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import jsonschema

from distill.v1 import common_pb2
from services.common.errors import InvalidArgument
from services.judge.composite import Component, CompositeJudge, Judge
from services.judge.llm_judge import DEFAULT_CRITERIA, Complete, Criterion, LlmJudge
from services.judge.programmatic import JsonSchemaJudge, LengthJudge, ReferenceJudge, RegexJudge
from services.judge.safe_regex import compile_field, re2_validator

# The default LLM judge is a cheap model, not the teacher.
DEFAULT_JUDGE_MODEL = common_pb2.ModelSpec(
    provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini", api_key_env="OPENAI_API_KEY",
    temperature=0.0, max_tokens=256,
)
_MATCH_MODES = {
    common_pb2.MATCH_MODE_EXACT: "exact",
    common_pb2.MATCH_MODE_NORMALIZED: "normalized",
    common_pb2.MATCH_MODE_LABEL: "label",
}
_CRITERION_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

# ModelSpec → the provider call the LLM judge uses (the generator's provider layer).
CompleteFactory = Callable[[common_pb2.ModelSpec], Complete]


def build_judge(spec: common_pb2.JudgeSpec, make_complete: CompleteFactory | None,
                field: str = "judge") -> Judge:
    kind = spec.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(f"{field}: set one of llm, reference, regex, json_schema, length, "
                              "composite")
    if kind == "reference":
        mode = _MATCH_MODES.get(spec.reference.mode, "normalized")
        return ReferenceJudge(mode)
    if kind == "regex":
        pattern = compile_field(spec.regex.pattern, f"{field}.regex.pattern")
        return RegexJudge(pattern, spec.regex.full_match)
    if kind == "json_schema":
        return JsonSchemaJudge(_schema_validator(spec.json_schema.schema_json, field))
    if kind == "length":
        low, high = spec.length.min_chars, spec.length.max_chars
        if low < 0 or high < 0 or (high and low > high):
            raise InvalidArgument(f"{field}.length: need 0 <= min_chars <= max_chars, got "
                                  f"{low}..{high}")
        return LengthJudge(low, high)
    if kind == "llm":
        return _llm_judge(spec.llm, make_complete, field)
    return _composite(spec.composite, make_complete, field)


def _schema_validator(schema_json: str, field: str) -> jsonschema.protocols.Validator:
    try:
        schema = json.loads(schema_json)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{field}.json_schema.schema_json: not JSON ({exc.msg})") from None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidArgument(f"{field}.json_schema.schema_json: not a valid JSON Schema "
                              f"({exc.message})") from None
    return re2_validator(cls, schema, f"{field}.json_schema.schema_json")


def _llm_judge(llm: common_pb2.LlmJudge, make_complete: CompleteFactory | None,
               field: str) -> LlmJudge:
    criteria = DEFAULT_CRITERIA
    if llm.criteria:
        criteria = tuple(Criterion(c.name, c.description, c.weight) for c in llm.criteria)
        for i, c in enumerate(criteria):
            if not _CRITERION_NAME.fullmatch(c.name):
                raise InvalidArgument(f"{field}.llm.criteria[{i}].name: lower snake case, got "
                                      f"{c.name!r}")
            if c.weight <= 0:
                raise InvalidArgument(f"{field}.llm.criteria[{i}].weight: must be > 0")
        if len({c.name for c in criteria}) != len(criteria):
            raise InvalidArgument(f"{field}.llm.criteria: names must be unique")
    retries = llm.max_parse_retries if llm.HasField("max_parse_retries") else 2
    if not 0 <= retries <= 5:
        raise InvalidArgument(f"{field}.llm.max_parse_retries: 0..5, got {retries}")
    if make_complete is None:
        raise InvalidArgument(f"{field}.llm: this judge service has no model providers")
    model = llm.model if llm.HasField("model") else DEFAULT_JUDGE_MODEL
    return LlmJudge(make_complete(model), criteria, llm.rubric_text, retries)


def _composite(composite: common_pb2.CompositeJudge, make_complete: CompleteFactory | None,
               field: str) -> CompositeJudge:
    if not composite.components:
        raise InvalidArgument(f"{field}.composite.components: at least one component")
    components = []
    for i, part in enumerate(composite.components):
        where = f"{field}.composite.components[{i}]"
        if part.weight < 0 or (part.weight == 0 and not part.gate):
            raise InvalidArgument(f"{where}.weight: must be > 0 (or 0 for a pure gate)")
        judge = build_judge(part.judge, make_complete, f"{where}.judge")
        name = part.judge.WhichOneof("kind") or "judge"
        components.append(Component(f"{name}#{i}", judge, part.weight, part.gate,
                                    part.gate_min_score))
    if sum(c.weight for c in components) <= 0:
        raise InvalidArgument(f"{field}.composite: the weights must not all be 0")
    return CompositeJudge(tuple(components))
