"""Judges that need no model: reference match, regex, JSON Schema, length bounds (the checks
themselves are services/common/answer_checks.py, shared with the router's validators)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema

from distill.v1.common_pb2 import Prompt
from services.common import answer_checks as checks
from services.common.judging.scores import Score, binary


@dataclass(frozen=True)
class ReferenceJudge:
    mode: str  # "exact" | "normalized" | "label"

    async def score(self, prompt: Prompt, text: str) -> Score:
        if not prompt.HasField("reference"):
            return Score.failed("the prompt has no reference answer to compare with")
        return binary(*checks.reference_match(self.mode, prompt.reference, text))


@dataclass(frozen=True)
class RegexJudge:
    pattern: Any  # an RE2 pattern (services/common/safe_regex.py): linear time on any input
    full_match: bool

    async def score(self, prompt: Prompt, text: str) -> Score:
        return binary(*checks.regex_match(self.pattern, self.full_match, text))


@dataclass(frozen=True)
class JsonSchemaJudge:
    validator: jsonschema.protocols.Validator

    async def score(self, prompt: Prompt, text: str) -> Score:
        return binary(*checks.json_schema_match(self.validator, text))


@dataclass(frozen=True)
class LengthJudge:
    min_chars: int
    max_chars: int

    async def score(self, prompt: Prompt, text: str) -> Score:
        return binary(*checks.length_within(self.min_chars, self.max_chars, text))
