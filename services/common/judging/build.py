"""A checked judge spec (services.common.specs.judge) → a ready judge."""

from __future__ import annotations

from collections.abc import Callable

from services.common.answer_checks import schema_validator
from services.common.errors import InvalidArgument
from services.common.judging.composite import Component, CompositeJudge, Judge
from services.common.judging.llm_judge import Complete, LlmJudge
from services.common.judging.programmatic import (
    JsonSchemaJudge,
    LengthJudge,
    ReferenceJudge,
    RegexJudge,
)
from services.common.specs import judge as specs

# An LLM judge's model → the provider call it uses (the generator's provider layer).
CompleteFactory = Callable[[specs.LlmJudgeSpec], Complete]


def build_judge(spec: specs.JudgeKind, make_complete: CompleteFactory | None) -> Judge:
    """`make_complete` None: this judge service has no model providers (programmatic only)."""
    if isinstance(spec, specs.ReferenceJudgeSpec):
        return ReferenceJudge(spec.mode)
    if isinstance(spec, specs.RegexJudgeSpec):
        return RegexJudge(spec.pattern, spec.full_match)
    if isinstance(spec, specs.JsonSchemaJudgeSpec):
        return JsonSchemaJudge(schema_validator(spec))
    if isinstance(spec, specs.LengthJudgeSpec):
        return LengthJudge(spec.min_chars, spec.max_chars)
    if isinstance(spec, specs.LlmJudgeSpec):
        if make_complete is None:
            raise InvalidArgument(f"{spec.field}: this judge service has no model providers")
        return LlmJudge(make_complete(spec), spec.criteria, spec.rubric_text,
                        spec.max_parse_retries)
    return CompositeJudge(tuple(
        Component(c.name, build_judge(c.judge, make_complete), c.weight, c.gate,
                  c.gate_min_score)
        for c in spec.components))
