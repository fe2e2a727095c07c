"""Datasets from an alias's traces: a time window, filters, deduplication, a row cap and a seed.

Segments are read a line at a time and the result is written to a temporary file, so memory
holds one digest per distinct prompt and the sampled rows' offsets, never the traces. The result
is stored like an upload (`datasets/{sha256}.jsonl`), so `Distill` takes its reference as it is.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from distill.v1 import gateway_pb2
from services.common.errors import InvalidArgument
from services.common.specs.layout import dataset_key
from services.common.specs.names import alias_name
from services.common.storage import ArtifactStore
from services.common.traces import layout
from services.common.traces.records import TARGETS, prompt_digest
from services.gateway.uploads import store_dataset

MAX_WINDOW_DAYS = 366
DEFAULT_WINDOW_DAYS = 7


@dataclass(frozen=True)
class TraceQuery:
    project: str
    alias: str
    since: float
    until: float
    targets: frozenset[str] = frozenset()  # empty: every target
    fallbacks_only: bool = False
    validator_failed_only: bool = False
    tags: dict[str, str] = field(default_factory=dict)  # every one must match
    deduplicate: bool = True
    max_rows: int = 0  # 0: no cap
    seed: int = 0
    answers_as_reference: bool = False  # the served answer becomes the row's reference

    def __post_init__(self) -> None:
        if self.until < self.since:
            raise InvalidArgument("until: must not be before since")
        if (self.until - self.since) / 86400 > MAX_WINDOW_DAYS:
            raise InvalidArgument(f"since: the window is at most {MAX_WINDOW_DAYS} days")
        unknown = sorted(self.targets - set(TARGETS))
        if unknown:
            raise InvalidArgument(f"targets: {', '.join(unknown)} not one of {', '.join(TARGETS)}")
        if self.max_rows < 0:
            raise InvalidArgument("max_rows: must be 0 (no cap) or more")

    def matches(self, line: dict) -> bool:
        served = line.get("served_by") or {}
        tags = line.get("tags") or {}
        return (self.since <= line.get("created_at", 0) <= self.until
                and (not self.targets or served.get("target") in self.targets)
                and (not self.fallbacks_only or bool(line.get("fallback_reason")))
                and (not self.validator_failed_only or line.get("validator") == "failed")
                and all(tags.get(k) == v for k, v in self.tags.items()))


def _seconds(request: gateway_pb2.CreateDatasetFromTracesRequest, field: str) -> int:
    """A Timestamp field in seconds; INVALID_ARGUMENT for one protobuf calls invalid (nanos
    outside [0, 1e9), seconds outside years 1-9999)."""
    try:
        return getattr(request, field).ToSeconds()
    except ValueError as exc:
        raise InvalidArgument(f"{field}: {exc}") from None


def query_from_request(request: gateway_pb2.CreateDatasetFromTracesRequest, project: str,
                       now: float) -> TraceQuery:
    until = _seconds(request, "end_time") if request.HasField("end_time") else now
    since = (_seconds(request, "start_time") if request.HasField("start_time")
             else until - DEFAULT_WINDOW_DAYS * 86400)
    return TraceQuery(project=project, alias=alias_name(request.alias, "alias"), since=since,
                      until=until, targets=frozenset(request.targets),
                      fallbacks_only=request.fallbacks_only,
                      validator_failed_only=request.validator_failed_only,
                      tags=dict(request.tags), deduplicate=not request.keep_duplicates,
                      max_rows=request.max_rows, seed=request.seed,
                      answers_as_reference=request.answers_as_reference)


def create(store: ArtifactStore, request: gateway_pb2.CreateDatasetFromTracesRequest,
           project: str, now: float) -> gateway_pb2.CreateDatasetFromTracesResponse:
    stored, counts = build(store, query_from_request(request, project, now))
    return gateway_pb2.CreateDatasetFromTracesResponse(
        dataset=stored.dataset, prompts=stored.prompts, deduplicated=stored.deduplicated,
        segments_read=counts.segments, traces_scanned=counts.scanned,
        traces_matched=counts.matched, duplicates_dropped=counts.duplicates)


def list_days(store: ArtifactStore, project: str, alias: str) -> gateway_pb2.ListTraceDaysResponse:
    days: dict[str, gateway_pb2.TraceDay] = {}
    for key in store.list(layout.alias_prefix(project, alias_name(alias, "alias"))):
        day = layout.day_from_key(key)
        if day is None:
            continue
        entry = days.setdefault(day, gateway_pb2.TraceDay(day=day))
        entry.segments += 1
        entry.size_bytes += store.stat(key).size_bytes
    return gateway_pb2.ListTraceDaysResponse(days=[days[d] for d in sorted(days)])


@dataclass
class Counts:
    segments: int = 0
    scanned: int = 0
    matched: int = 0
    duplicates: int = 0


def segment_keys(store: ArtifactStore, query: TraceQuery) -> Iterator[str]:
    """The segments of the days the window touches, oldest first."""
    for day in layout.days_between(query.since, query.until):
        yield from sorted(store.list(layout.day_prefix(query.project, query.alias, day)))


def dataset_row(line: dict, answers_as_reference: bool) -> dict:
    served = line.get("served_by") or {}
    messages = list(line["messages"])
    if answers_as_reference:
        messages.append({"role": "assistant", "content": line.get("answer", "")})
    return {"messages": messages, "source": "traces", "request_id": line.get("request_id", ""),
            "served_by": f"{served.get('alias')}@{served.get('version')}:{served.get('target')}"}


def build(store: ArtifactStore, query: TraceQuery) -> tuple[gateway_pb2.UploadDatasetResponse,
                                                             Counts]:
    counts = Counts()
    with tempfile.TemporaryDirectory(prefix="distill-traces-") as folder:
        matched = os.path.join(folder, "matched.jsonl")
        offsets = _write_matches(store, query, matched, counts)
        chosen = _sample(offsets, query.max_rows, query.seed)
        if not chosen:
            raise InvalidArgument(
                f"no traces of alias {query.alias!r} match: {counts.scanned} scanned in "
                f"{counts.segments} segments, {counts.matched} matched the filters")
        result = os.path.join(folder, "dataset.jsonl")
        sha256 = _copy_rows(matched, chosen, result)
        stored = store_dataset(result, dataset_key(query.project, sha256), sha256, store,
                               f"dataset from traces of {query.alias!r}")
    return stored, counts


def matching_lines(store: ArtifactStore, query: TraceQuery,
                   counts: Counts | None = None) -> Iterator[dict]:
    """The window's traces that pass the filters, oldest segment first, one line at a time."""
    counts = counts if counts is not None else Counts()
    for key in segment_keys(store, query):
        counts.segments += 1
        with store.open(key) as reader:
            for raw in io.BufferedReader(reader):
                counts.scanned += 1
                line = json.loads(raw)
                if query.matches(line):
                    counts.matched += 1
                    yield line


def _write_matches(store: ArtifactStore, query: TraceQuery, path: str,
                   counts: Counts) -> list[int]:
    seen: set[bytes] = set()
    offsets: list[int] = []
    with open(path, "wb") as out:
        for line in matching_lines(store, query, counts):
            if query.deduplicate:
                digest = prompt_digest(line)
                if digest in seen:
                    counts.duplicates += 1
                    continue
                seen.add(digest)
            offsets.append(out.tell())
            row = dataset_row(line, query.answers_as_reference)
            out.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    return offsets


def _sample(offsets: list[int], max_rows: int, seed: int) -> list[int]:
    """Up to `max_rows` offsets chosen uniformly with `seed`, kept in trace order."""
    if not max_rows or len(offsets) <= max_rows:
        return offsets
    return sorted(random.Random(seed).sample(offsets, max_rows))


def _copy_rows(source: str, offsets: list[int], dest: str) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "wb") as out:
        for offset in offsets:
            src.seek(offset)
            row = src.readline()
            digest.update(row)
            out.write(row)
    return digest.hexdigest()
