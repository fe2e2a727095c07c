"""The alias page: what an alias's traffic looked like over a window, from its traces.

Traffic per target over time, the fallback rate, each target's validator pass rate, live judge
score (and what judging cost), latency and cost per 1,000 requests, and the version history with
each version's reason. Rendered like the
job report (index.html, PNG plots, report.json with every number) into
`aliases/{project}/{alias}/report/`.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distill.v1 import common_pb2, gateway_pb2
from services.common.errors import InvalidArgument
from services.common.specs.layout import alias_report_prefix
from services.common.storage import ArtifactStore
from services.gateway.alias_report_html import render_alias_html
from services.gateway.trace_datasets import (
    DEFAULT_WINDOW_DAYS,
    MAX_WINDOW_DAYS,
    Counts,
    TraceQuery,
    matching_lines,
)

FORMAT_VERSION = 1
DAY = 86400
# Latency percentiles come from a uniform sample of this many requests per target: memory stays
# bounded however busy the alias was.
LATENCY_SAMPLE = 10_000
PLOT_FILES = {"traffic": "traffic.png", "targets": "targets.png"}


def alias_window_days(requested: int) -> int:
    if requested < 0 or requested > MAX_WINDOW_DAYS:
        raise InvalidArgument(f"window_days: 0 (7 days) to {MAX_WINDOW_DAYS}, got {requested}")
    return requested or DEFAULT_WINDOW_DAYS


@dataclass
class _Target:
    requests: int = 0
    cost_usd: float = 0.0
    tokens: int = 0
    passed: int = 0
    failed: int = 0
    judged: int = 0
    score_total: float = 0.0
    judge_cost_usd: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, line: dict, rng: random.Random) -> None:
        self.requests += 1
        self.cost_usd += float(line.get("cost_usd") or 0.0)
        tokens = line.get("tokens") or {}
        self.tokens += int(tokens.get("prompt", 0)) + int(tokens.get("completion", 0))
        if line.get("validator") == "passed":
            self.passed += 1
        elif line.get("validator") == "failed":
            self.failed += 1
        if (score := line.get("judge_score")) is not None:
            self.judged += 1
            self.score_total += float(score)
        self.judge_cost_usd += float(line.get("judge_cost_usd") or 0.0)
        latency = float(line.get("latency_seconds") or 0.0)
        if len(self.latencies) < LATENCY_SAMPLE:  # reservoir sampling
            self.latencies.append(latency)
        elif (slot := rng.randrange(self.requests)) < LATENCY_SAMPLE:
            self.latencies[slot] = latency

    def summary(self, name: str, served: int) -> dict[str, Any]:
        judged = self.passed + self.failed
        ordered = sorted(self.latencies)
        return {
            "target": name, "requests": self.requests,
            "share": self.requests / served if served and not name.endswith("(shadow)") else None,
            "latency_p50_seconds": _percentile(ordered, 0.50),
            "latency_p95_seconds": _percentile(ordered, 0.95),
            "cost_per_1k_requests_usd": self.cost_usd / self.requests * 1000,
            "tokens": self.tokens,
            "validator_pass_rate": self.passed / judged if judged else None,
            "judged": self.judged,
            "judge_score": self.score_total / self.judged if self.judged else None,
            "judge_cost_usd": self.judge_cost_usd,
        }


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="minutes")


def collect(alias: gateway_pb2.Alias, store: ArtifactStore, project: str, now: float,
            window_days: int) -> dict[str, Any]:
    """Every number of the alias page; traffic per hour up to 2 days' window, else per day."""
    since = now - window_days * DAY
    bucket = 3600 if window_days <= 2 else DAY
    query = TraceQuery(project=project, alias=alias.name, since=since, until=now)
    counts = Counts()
    targets: dict[str, _Target] = defaultdict(_Target)
    traffic: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    fallbacks = served = 0
    rng = random.Random(0)
    for line in matching_lines(store, query, counts):
        name = (line.get("served_by") or {}).get("target", "unknown")
        if line.get("shadow"):
            name += " (shadow)"
        else:
            served += 1
            fallbacks += bool(line.get("fallback_reason"))
            traffic[int((line["created_at"] - since) // bucket)][name] += 1
        targets[name].add(line, rng)
    starts = [since + i * bucket for i in range(int((now - since) // bucket) + 1)]
    names = sorted({n for counts_ in traffic.values() for n in counts_})
    return {
        "format": FORMAT_VERSION,
        "alias": {"name": alias.name, "version": alias.version,
                  "target": _describe(alias.target),
                  "updated": _iso(alias.update_time.ToSeconds()) if alias.HasField(
                      "update_time") else None},
        "window": {"since": _iso(since), "until": _iso(now), "bucket_seconds": bucket,
                   "segments": counts.segments, "traces": counts.matched},
        "totals": {"requests": served, "fallbacks": fallbacks,
                   "fallback_rate": fallbacks / served if served else None},
        "targets": [targets[n].summary(n, served) for n in sorted(targets)],
        "traffic": {"buckets": [_iso(t) for t in starts],
                    "series": {n: [traffic[i].get(n, 0) for i in range(len(starts))]
                               for n in names}},
        "history": [{"version": v.version, "target": _describe(v.target),
                     "reason": v.target.description,
                     "time": _iso(v.create_time.ToSeconds())} for v in alias.history],
    }


def _describe(target: gateway_pb2.AliasTarget) -> str:
    kind = target.WhichOneof("target")
    if kind == "job":
        return f"student of {target.job}"
    if kind == "teacher":
        return f"teacher {target.teacher.model}"
    if kind == "upstream":
        return f"upstream {target.upstream.model} at {target.upstream.base_url}"
    return "nothing"


def draw_plots(data: dict[str, Any], folder: Path) -> dict[str, str]:
    """The two plots, when there is traffic to draw (matplotlib missing: tables only)."""
    if not data["totals"]["requests"]:
        data["plots_note"] = "no traffic in the window"
        return {}
    try:
        from services.gateway import report_plots as plots
    except ImportError as exc:
        data["plots_note"] = f"plots not drawn: {exc} (pip install 'distill[report]')"
        return {}
    plots.traffic_plot(data["traffic"]["buckets"], data["traffic"]["series"],
                       folder / PLOT_FILES["traffic"])
    plots.targets_plot(data["targets"], folder / PLOT_FILES["targets"])
    return dict(PLOT_FILES)


def write_report(alias: gateway_pb2.Alias, store: ArtifactStore, project: str, now: float,
                 window_days: int, folder: Path) -> dict[str, Any]:
    data = collect(alias, store, project, now, window_days)
    data["plots"] = draw_plots(data, folder)
    data["files"] = sorted([*data["plots"].values(), "index.html", "report.json"])
    (folder / "index.html").write_text(render_alias_html(data), encoding="utf-8")
    (folder / "report.json").write_text(
        json.dumps(data, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n",
        encoding="utf-8")
    return data


def build_alias_report(alias: gateway_pb2.Alias, store: ArtifactStore, project: str,
                       now: float, window_days: int) -> common_pb2.ArtifactRef:
    """Renders the page and stores it (replacing the last one); the folder's ref."""
    prefix = alias_report_prefix(project, alias.name)
    folder = Path(tempfile.mkdtemp(prefix="distill-alias-report-"))
    try:
        write_report(alias, store, project, now, window_days, folder)
        store.delete_prefix(prefix)
        return store.put_dir(prefix, folder).as_proto()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

