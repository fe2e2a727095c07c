"""Judges that need no model: reference match, regex, JSON Schema, length bounds."""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Any

import jsonschema

from distill.v1.common_pb2 import Prompt
from services.judge.scores import Score, binary

_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026"  # typographic quotes


def normalise(text: str) -> str:
    """Case, inner whitespace and surrounding punctuation/quotes do not matter."""
    return " ".join(text.casefold().split()).strip(_PUNCT + " ")


def first_label(text: str) -> str:
    """The first label-like token: 'Label: positive.' → 'positive'; '**Negative**' → 'negative'."""
    cleaned = normalise(text)
    cleaned = re.sub(r"^(the\s+)?(answer|label|sentiment|category|class)\s*(is|:)\s*", "", cleaned)
    match = re.search(r"[\w-]+", cleaned)
    return match.group(0) if match else ""


@dataclass(frozen=True)
class ReferenceJudge:
    mode: str  # "exact" | "normalized" | "label"

    async def score(self, prompt: Prompt, text: str) -> Score:
        reference = prompt.reference if prompt.HasField("reference") else None
        if reference is None:
            return Score.failed("the prompt has no reference answer to compare with")
        if self.mode == "exact":
            return binary(text.strip() == reference.strip(), "exact match")
        if self.mode == "normalized":
            return binary(normalise(text) == normalise(reference), "normalised match")
        got, want = first_label(text), first_label(reference)
        return binary(bool(want) and got == want, f"label {got!r} vs reference {want!r}")


@dataclass(frozen=True)
class RegexJudge:
    pattern: Any  # an RE2 pattern (services/common/safe_regex.py): linear time on any input
    full_match: bool

    async def score(self, prompt: Prompt, text: str) -> Score:
        matcher = self.pattern.fullmatch if self.full_match else self.pattern.search
        return binary(matcher(text.strip()) is not None, f"regex /{self.pattern.pattern}/")


@dataclass(frozen=True)
class JsonSchemaJudge:
    validator: jsonschema.protocols.Validator

    async def score(self, prompt: Prompt, text: str) -> Score:
        body = _strip_code_fence(text)
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            return binary(False, f"invalid JSON: {exc.msg} at line {exc.lineno}")
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return binary(False, f"schema violation at {where}: {error.message}")
        return binary(True, "valid JSON matching the schema")


@dataclass(frozen=True)
class LengthJudge:
    min_chars: int
    max_chars: int

    async def score(self, prompt: Prompt, text: str) -> Score:
        n = len(text.strip())
        too_short = self.min_chars and n < self.min_chars
        too_long = self.max_chars and n > self.max_chars
        return binary(not (too_short or too_long),
                      f"{n} chars, bounds [{self.min_chars or '-'}, {self.max_chars or '-'}]")


def _strip_code_fence(text: str) -> str:
    """Models often wrap JSON in ```json fences; the content is what counts."""
    stripped = text.strip()
    fenced = re.fullmatch(r"```[\w-]*\s*\n(.*?)\n?```", stripped, flags=re.DOTALL)
    return fenced.group(1) if fenced else stripped
