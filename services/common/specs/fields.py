"""Reading one protobuf field: its default when unset, else the value within its bounds.

Every spec function reads its numbers through `int_field`/`float_field` and its free text through
`text_field`, so every refusal has the same shape: `{field}: must be in [low, high], got {value}`
or `{field}: N bytes, over the L-byte limit`.
"""

from __future__ import annotations

import math
from typing import Any

from services.common.errors import InvalidArgument

KiB = 1024
# Size limits (UTF-8 bytes) of free-text spec fields. They keep a job row, a ListJobs page and
# every stage request small whatever a client sends (the gRPC message limit alone is 16 MiB).
MAX_NAME_BYTES = 256  # display names, env variable names, criterion and module names
MAX_MODEL_BYTES = 1 * KiB  # model names: a registry shortcut, a provider id or a local path
MAX_URI_BYTES = 2 * KiB  # artifact URIs, base URLs
MAX_SHA256_BYTES = 64
MAX_SYSTEM_PROMPT_BYTES = 256 * KiB
MAX_RUBRIC_BYTES = 64 * KiB  # an LLM judge's rubric text, each criterion's description
MAX_REGEX_BYTES = 4 * KiB
MAX_SCHEMA_BYTES = 256 * KiB
MAX_LIST_ITEMS = 64  # criteria, target modules, composite components


def text_field(value: str, path: str, limit: int) -> str:
    """`value` when its UTF-8 form is at most `limit` bytes; else InvalidArgument naming both."""
    size = len(value.encode("utf-8"))  # (a protobuf string is valid UTF-8)
    if size > limit:
        raise InvalidArgument(f"{path}: {size} bytes, over the {limit}-byte limit")
    return value


def list_field(items: Any, path: str, limit: int = MAX_LIST_ITEMS) -> Any:
    if len(items) > limit:
        raise InvalidArgument(f"{path}: {len(items)} items, over the limit of {limit}")
    return items


def model_text(spec: Any, path: str) -> None:
    """The free text of a ModelSpec: its model name, base URL and key variable name."""
    text_field(spec.model, join(path, "model"), MAX_MODEL_BYTES)
    text_field(spec.base_url, join(path, "base_url"), MAX_URI_BYTES)
    text_field(spec.api_key_env, join(path, "api_key_env"), MAX_NAME_BYTES)


def artifact_text(ref: Any, path: str) -> None:
    """The free text of an ArtifactRef."""
    text_field(ref.uri, join(path, "uri"), MAX_URI_BYTES)
    text_field(ref.sha256, join(path, "sha256"), MAX_SHA256_BYTES)
    text_field(ref.media_type, join(path, "media_type"), MAX_NAME_BYTES)


def join(prefix: str, name: str) -> str:
    """`prefix.name`, or `name` alone for a request's own top-level fields."""
    return f"{prefix}.{name}" if prefix else name


def int_field(msg: Any, name: str, path: str, default: int | None, *, low: int,
              high: int) -> int | None:
    if not msg.HasField(name):
        return default
    value = getattr(msg, name)
    if not low <= value <= high:
        raise _invalid(path, f"[{low}, {high}]", value)
    return value


def float_field(msg: Any, name: str, path: str, default: float | None, *, low: float,
                high: float, low_open: bool = False, high_open: bool = False) -> float | None:
    if not msg.HasField(name):
        return default
    return float_value(getattr(msg, name), path, low=low, high=high, low_open=low_open,
                       high_open=high_open)


def float_value(value: float, path: str, *, low: float, high: float, low_open: bool = False,
                high_open: bool = False) -> float:
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise _invalid(path, interval, value)
    return value


def _invalid(path: str, interval: str, value: object) -> InvalidArgument:
    return InvalidArgument(f"{path}: must be in {interval}, got {value}")
