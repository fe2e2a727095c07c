"""Checks on one answer that need no model: reference match, regex, JSON Schema, length, and a
label set. The judges score answers with them (services/common/judging/programmatic.py); the
router's alias validators run them on every answer. Each returns (passed, why in words).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Collection
from typing import Any

import jsonschema

from services.common.safe_regex import re2_validator
from services.common.specs import judge as specs

_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026"  # typographic quotes

Check = Callable[[str], tuple[bool, str]]


def normalise(text: str) -> str:
    """Case, inner whitespace and surrounding punctuation/quotes do not matter."""
    return " ".join(text.casefold().split()).strip(_PUNCT + " ")


def first_label(text: str) -> str:
    """The first label-like token: 'Label: positive.' → 'positive'; '**Negative**' → 'negative'."""
    cleaned = normalise(text)
    cleaned = re.sub(r"^(the\s+)?(answer|label|sentiment|category|class)\s*(is|:)\s*", "", cleaned)
    match = re.search(r"[\w-]+", cleaned)
    return match.group(0) if match else ""


def reference_match(mode: str, reference: str, text: str) -> tuple[bool, str]:
    """mode: "exact", "normalized" or "label"."""
    if mode == "exact":
        return text.strip() == reference.strip(), "exact match"
    if mode == "normalized":
        return normalise(text) == normalise(reference), "normalised match"
    got, want = first_label(text), first_label(reference)
    return bool(want) and got == want, f"label {got!r} vs reference {want!r}"


def regex_match(pattern: Any, full_match: bool, text: str) -> tuple[bool, str]:
    """`pattern` is RE2 (services/common/safe_regex.py): linear time on any input."""
    matcher = pattern.fullmatch if full_match else pattern.search
    return matcher(text.strip()) is not None, f"regex /{pattern.pattern}/"


def schema_validator(spec: specs.JsonSchemaJudgeSpec) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(spec.schema)
    return re2_validator(cls, spec.schema, spec.field)


def json_schema_match(validator: jsonschema.protocols.Validator, text: str) -> tuple[bool, str]:
    body = _strip_code_fence(text)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return False, f"invalid JSON: {exc.msg} at line {exc.lineno}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return False, f"schema violation at {where}: {error.message}"
    return True, "valid JSON matching the schema"


def length_within(min_chars: int, max_chars: int, text: str) -> tuple[bool, str]:
    n = len(text.strip())
    too_short = min_chars and n < min_chars
    too_long = max_chars and n > max_chars
    bounds = f"[{min_chars or '-'}, {max_chars or '-'}]"
    return not (too_short or too_long), f"{n} chars, bounds {bounds}"


def label_in(labels: Collection[str], text: str) -> tuple[bool, str]:
    """`labels` are case-folded."""
    got = first_label(text)
    return got in labels, f"label {got!r}" + ("" if got in labels else " is not one of the labels")


def programmatic_check(kind: specs.JudgeKind) -> Check:
    """A ready check for a regex, JSON-schema or length judge, or a composite of them (which
    passes when every component passes); schemas are compiled once, here."""
    if isinstance(kind, specs.RegexJudgeSpec):
        return lambda text: regex_match(kind.pattern, kind.full_match, text)
    if isinstance(kind, specs.JsonSchemaJudgeSpec):
        validator = schema_validator(kind)
        return lambda text: json_schema_match(validator, text)
    if isinstance(kind, specs.LengthJudgeSpec):
        return lambda text: length_within(kind.min_chars, kind.max_chars, text)
    if isinstance(kind, specs.CompositeJudgeSpec):
        parts = [programmatic_check(c.judge) for c in kind.components]

        def every(text: str) -> tuple[bool, str]:
            results = [part(text) for part in parts]
            failed = [why for ok, why in results if not ok]
            return not failed, "; ".join(failed) or "every check passed"
        return every
    raise ValueError(f"{type(kind).__name__} needs a model or a reference: not programmatic")


def _strip_code_fence(text: str) -> str:
    """Models often wrap JSON in ```json fences; the content is what counts."""
    stripped = text.strip()
    fenced = re.fullmatch(r"```[\w-]*\s*\n(.*?)\n?```", stripped, flags=re.DOTALL)
    return fenced.group(1) if fenced else stripped
