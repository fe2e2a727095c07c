"""Trace retention: whole UTC days older than the setting are deleted, oldest first."""

from __future__ import annotations

import datetime as dt

from services.common.storage import ArtifactStore
from services.common.traces import layout


def sweep(store: ArtifactStore, now: float, retention_days: float) -> int:
    """Deletes every trace day folder more than `retention_days` days before `now`'s day (that
    many whole days are kept besides today); returns how many segments went. 0 keeps all."""
    if retention_days <= 0:
        return 0
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    cutoff = (today - dt.timedelta(days=int(retention_days))).isoformat()
    expired = sorted({key.rsplit("/", 1)[0] + "/" for key in store.list(layout.FOLDER)
                      if (day := layout.day_from_key(key)) is not None and day < cutoff})
    return sum(store.delete_prefix(prefix) for prefix in expired)
