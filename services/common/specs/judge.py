"""A judge config (JudgeConfig, or a DistillSpec's `judge`) checked, with its defaults.

The result is a tree of frozen values the judge service builds its judges from; the gateway
checks a spec with the same function and never builds a judge.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from distill.v1 import common_pb2, judge_pb2
from services.common.auth import DEFAULT_PROJECT, project_name
from services.common.errors import InvalidArgument
from services.common.providers.spec import ModelConfig, resolve_model_spec
from services.common.safe_regex import check_schema_patterns, compile_field
from services.common.specs import names
from services.common.specs.fields import (
    MAX_REGEX_BYTES,
    MAX_RUBRIC_BYTES,
    MAX_SCHEMA_BYTES,
    float_field,
    int_field,
    join,
    list_field,
    model_text,
    text_field,
)

MAX_SCORE = 10.0  # scores are 0..10
DEFAULT_TOP_K = 2
MAX_TOP_K = 16
DEFAULT_MIN_MARGIN = 1.0
DEFAULT_MAX_PARSE_RETRIES = 2
MAX_PARSE_RETRIES = 5
# The default LLM judge is a cheap model, not the teacher.
DEFAULT_JUDGE_MODEL = common_pb2.ModelSpec(
    provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini", api_key_env="OPENAI_API_KEY",
    temperature=0.0, max_tokens=256,
)
DEFAULT_JUDGE_TEMPERATURE = 0.0  # the same question gets the same grade (and a cache hit)
MATCH_MODES = {
    common_pb2.MATCH_MODE_EXACT: "exact",
    common_pb2.MATCH_MODE_NORMALIZED: "normalized",
    common_pb2.MATCH_MODE_LABEL: "label",
}
DEFAULT_MATCH_MODE = "normalized"
_CRITERION_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    weight: float


DEFAULT_CRITERIA = (
    Criterion("correctness", "Is the answer factually and logically correct for the task?", 0.6),
    Criterion("instruction_following", "Does it do exactly what the task asks, in the asked "
              "format?", 0.3),
    Criterion("conciseness", "Is it free of padding, repetition and irrelevant text?", 0.1),
)


@dataclass(frozen=True)
class LlmJudgeSpec:
    model: ModelConfig
    field: str  # where the model was given (errors opening it name this field)
    criteria: tuple[Criterion, ...]
    rubric_text: str
    max_parse_retries: int


@dataclass(frozen=True)
class ReferenceJudgeSpec:
    mode: str  # "exact" | "normalized" | "label"


@dataclass(frozen=True)
class RegexJudgeSpec:
    pattern: Any  # an RE2 pattern (services/common/safe_regex.py): linear time on any input
    full_match: bool


@dataclass(frozen=True)
class JsonSchemaJudgeSpec:
    schema: Any  # a checked JSON Schema (parsed JSON) whose patterns RE2 can run
    field: str = "judge.json_schema.schema_json"


@dataclass(frozen=True)
class LengthJudgeSpec:
    min_chars: int
    max_chars: int  # 0: no upper bound


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    judge: JudgeKind
    weight: float
    gate: bool
    gate_min_score: float


@dataclass(frozen=True)
class CompositeJudgeSpec:
    components: tuple[ComponentSpec, ...]


JudgeKind = (LlmJudgeSpec | ReferenceJudgeSpec | RegexJudgeSpec | JsonSchemaJudgeSpec
             | LengthJudgeSpec | CompositeJudgeSpec)


@dataclass(frozen=True)
class JudgeSpec:
    """A JudgeConfig with its defaults: how to score and what to keep."""

    judge: JudgeKind
    top_k: int
    min_score: float | None
    min_margin: float
    job_id: str
    project: str
    run_id: str  # this Judge run's: its calls' cache entries name it as their payer


def judge_spec(config: judge_pb2.JudgeConfig, field: str = "config") -> JudgeSpec:
    """Checks every field of `config`; InvalidArgument names `field`.sub-field. An unset job_id
    gets a fresh one (a judge run outside a gateway job), as does an unset run_id."""
    top_k = config.top_k or DEFAULT_TOP_K
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidArgument(f"{field}.top_k: must be in [1, {MAX_TOP_K}] (0 means "
                              f"{DEFAULT_TOP_K}), got {config.top_k}")
    min_score = float_field(config, "min_score", f"{field}.min_score", None, low=0.0,
                            high=MAX_SCORE)
    margin = float_field(config, "min_margin", f"{field}.min_margin", DEFAULT_MIN_MARGIN,
                         low=0.0, high=MAX_SCORE)
    return JudgeSpec(judge_kind(config.judge, f"{field}.judge"), top_k, min_score, margin,
                     names.job_id(config.job_id, f"{field}.job_id", optional=True),
                     project_name(config.project or DEFAULT_PROJECT, f"{field}.project"),
                     names.job_id(config.run_id, f"{field}.run_id", optional=True))


def judge_kind(spec: common_pb2.JudgeSpec, field: str = "judge") -> JudgeKind:
    kind = spec.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(f"{field}: set one of llm, reference, regex, json_schema, length, "
                              "composite")
    if kind == "reference":
        return ReferenceJudgeSpec(MATCH_MODES.get(spec.reference.mode, DEFAULT_MATCH_MODE))
    if kind == "regex":
        where = f"{field}.regex.pattern"
        text_field(spec.regex.pattern, where, MAX_REGEX_BYTES)
        return RegexJudgeSpec(compile_field(spec.regex.pattern, where),
                              spec.regex.full_match)
    if kind == "json_schema":
        where = f"{field}.json_schema.schema_json"
        text_field(spec.json_schema.schema_json, where, MAX_SCHEMA_BYTES)
        return JsonSchemaJudgeSpec(_schema(spec.json_schema.schema_json, where), where)
    if kind == "length":
        low, high = spec.length.min_chars, spec.length.max_chars
        if low < 0 or high < 0 or (high and low > high):
            raise InvalidArgument(f"{field}.length: need 0 <= min_chars <= max_chars (0: no "
                                  f"limit), got {low}..{high}")
        return LengthJudgeSpec(low, high)
    if kind == "llm":
        return _llm(spec.llm, field)
    return _composite(spec.composite, field)


def llm_judges(judge: JudgeKind) -> list[LlmJudgeSpec]:
    """Every LLM judge in `judge` (composites included): the ones that call a model."""
    if isinstance(judge, LlmJudgeSpec):
        return [judge]
    if isinstance(judge, CompositeJudgeSpec):
        return [llm for part in judge.components for llm in llm_judges(part.judge)]
    return []


def _schema(schema_json: str, field: str) -> Any:
    try:
        schema = json.loads(schema_json)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{field}: not JSON ({exc.msg})") from None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidArgument(f"{field}: not a valid JSON Schema ({exc.message})") from None
    check_schema_patterns(schema, field)
    return schema


def _llm(llm: common_pb2.LlmJudge, field: str) -> LlmJudgeSpec:
    criteria = DEFAULT_CRITERIA
    list_field(llm.criteria, f"{field}.llm.criteria")
    text_field(llm.rubric_text, f"{field}.llm.rubric_text", MAX_RUBRIC_BYTES)
    for i, c in enumerate(llm.criteria):
        text_field(c.description, f"{field}.llm.criteria[{i}].description", MAX_RUBRIC_BYTES)
    if llm.criteria:
        criteria = tuple(Criterion(c.name, c.description, c.weight) for c in llm.criteria)
        for i, c in enumerate(criteria):
            if not _CRITERION_NAME.fullmatch(c.name):
                raise InvalidArgument(f"{field}.llm.criteria[{i}].name: lower snake case, got "
                                      f"{c.name!r}")
            if c.weight <= 0:
                raise InvalidArgument(f"{field}.llm.criteria[{i}].weight: must be > 0, got "
                                      f"{c.weight}")
        if len({c.name for c in criteria}) != len(criteria):
            raise InvalidArgument(f"{field}.llm.criteria: names must be unique")
    retries = int_field(llm, "max_parse_retries", f"{field}.llm.max_parse_retries",
                        DEFAULT_MAX_PARSE_RETRIES, low=0, high=MAX_PARSE_RETRIES)
    where = join(field, "llm.model")
    if llm.HasField("model"):
        model_text(llm.model, where)
    model = resolve_model_spec(llm.model if llm.HasField("model") else DEFAULT_JUDGE_MODEL,
                               field=where, default_temperature=DEFAULT_JUDGE_TEMPERATURE)
    return LlmJudgeSpec(model, where, criteria, llm.rubric_text, retries)


def _composite(composite: common_pb2.CompositeJudge, field: str) -> CompositeJudgeSpec:
    if not composite.components:
        raise InvalidArgument(f"{field}.composite.components: at least one component")
    list_field(composite.components, f"{field}.composite.components")
    components = []
    for i, part in enumerate(composite.components):
        where = f"{field}.composite.components[{i}]"
        if part.weight < 0 or (part.weight == 0 and not part.gate):
            raise InvalidArgument(f"{where}.weight: must be > 0 (or 0 for a pure gate), got "
                                  f"{part.weight}")
        judge = judge_kind(part.judge, f"{where}.judge")
        name = part.judge.WhichOneof("kind") or "judge"
        components.append(ComponentSpec(f"{name}#{i}", judge, part.weight, part.gate,
                                        part.gate_min_score))
    if sum(c.weight for c in components) <= 0:
        raise InvalidArgument(f"{field}.composite: the weights must not all be 0")
    return CompositeJudgeSpec(tuple(components))
