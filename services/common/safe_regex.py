"""User-supplied regexes run in RE2, a linear-time engine: no pattern can stall the judge.

Python's `re` backtracks, so `^(a+)+$` on 25 `a`s and a `!` takes seconds and doubles with every
character, blocking the event loop (health checks included). RE2 has no backreferences or
lookaround; a pattern that uses them is refused up front, naming the field.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jsonschema
import re2
from jsonschema import ValidationError

from services.common.errors import InvalidArgument


class UnsupportedPattern(ValueError):
    """The pattern is not valid RE2 syntax (or uses a feature RE2 lacks)."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is the caller's error, not a line on our stderr
    return options  # (max_mem keeps RE2's default: a pattern too large to run is refused)


_OPTIONS = _options()


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern; cached, as JSON-schema validation compiles per instance."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise UnsupportedPattern(
            f"{reason} (patterns run in RE2: no backreferences or lookaround, repetitions up to "
            "1000, programs up to 8 MiB)") from None


def compile_field(pattern: str, field: str) -> Any:
    """`compile_pattern`, with a bad pattern as INVALID_ARGUMENT naming `field`."""
    try:
        return compile_pattern(pattern)
    except UnsupportedPattern as exc:
        raise InvalidArgument(f"{field}: invalid regex: {exc}") from None


def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and compile_pattern(patrn).search(instance) is None:
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                        schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        regex = compile_pattern(patrn)
        for key, value in instance.items():
            if regex.search(key) is not None:
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


def schema_patterns(schema: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every `pattern` and `patternProperties` key in a schema, with its JSON pointer."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            path = f"{where}/{key}"
            if key == "pattern" and isinstance(value, str):
                yield path, value
            elif key == "patternProperties" and isinstance(value, dict):
                for patrn, sub in value.items():
                    yield f"{path}/{patrn}", patrn
                    yield from schema_patterns(sub, f"{path}/{patrn}")
                continue
            yield from schema_patterns(value, path)
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            yield from schema_patterns(item, f"{where}/{i}")


def check_schema_patterns(schema: Any, field: str) -> None:
    """Every pattern of `schema` compiled now: one RE2 cannot run is INVALID_ARGUMENT naming
    `field` and where."""
    for pointer, patrn in schema_patterns(schema):
        compile_field(patrn, f"{field} at {pointer}")


def re2_validator(cls: Any, schema: Any, field: str) -> jsonschema.protocols.Validator:
    """A validator of `cls`'s draft whose `pattern`/`patternProperties` run in RE2."""
    check_schema_patterns(schema, field)
    extended = jsonschema.validators.extend(
        cls, {"pattern": _pattern, "patternProperties": _pattern_properties})
    return extended(schema)
