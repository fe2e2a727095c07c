"""Reading one optional protobuf field: its default when unset, else the value within its bounds.

Every spec function reads its numbers through these two, so every refusal has the same shape:
`{field}: must be in [low, high], got {value}`.
"""

from __future__ import annotations

import math
from typing import Any

from services.common.errors import InvalidArgument


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
