"""Where traces live in the artifact store: one folder per project, alias and UTC day.

The day in the key is what makes a time window and retention cheap: a window lists only the
days it covers, and retention deletes whole day folders without opening a segment.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

from services.common.auth import project_name

FOLDER = "traces/"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def day_of(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")


def alias_prefix(project: str, alias: str) -> str:
    return f"{FOLDER}{project_name(project)}/{alias}/"


def day_prefix(project: str, alias: str, day: str) -> str:
    return f"{alias_prefix(project, alias)}{day}/"


def segment_key(project: str, alias: str, timestamp: float) -> str:
    """A new segment's key; the time prefix keeps a day's segments in write order."""
    stamp = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%H%M%S")
    return f"{day_prefix(project, alias, day_of(timestamp))}{stamp}-{uuid.uuid4().hex[:12]}.jsonl"


def day_from_key(key: str) -> str | None:
    """The day folder of a trace key (`traces/p/a/2026-12-03/...`), or None if it has none."""
    parts = key.split("/")
    return parts[3] if len(parts) > 4 and _DAY.fullmatch(parts[3]) else None


def days_between(start: float, end: float) -> list[str]:
    """Every UTC day from `start` to `end` inclusive, oldest first."""
    first = dt.datetime.fromtimestamp(start, dt.UTC).date()
    last = dt.datetime.fromtimestamp(end, dt.UTC).date()
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
