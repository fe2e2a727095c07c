"""Datasets from traces: window, filters, deduplication, a seeded cap, and a result `Distill`
accepts (stored like an upload)."""

from __future__ import annotations

import pytest

from distill.v1 import gateway_pb2
from services.common.datasets import load_dataset, parse_jsonl
from services.common.errors import InvalidArgument
from services.common.storage import LocalStore
from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace
from services.gateway.trace_datasets import TraceQuery, build, query_from_request

DAY = 86400
NOW = 1_764_720_000.0


def trace(text: str, *, target: str = "teacher", at: float = NOW, **extra) -> Trace:
    return Trace(project="default", served_by=ServedBy("support", 2, target, "m"),
                 messages=(("user", text),), answer=f"answer to {text}", created_at=at, **extra)


@pytest.fixture
async def store(tmp_path):
    store = LocalStore(tmp_path)
    recorder = TraceRecorder(store)
    for t in [trace("old", at=NOW - 10 * DAY),
              trace("a"), trace("a"),  # the same prompt twice
              trace("b", target="student", validator="failed", fallback_reason="validator"),
              trace("c", target="student", validator="passed"),
              trace("d", tags={"team": "billing"}, at=NOW + DAY),
              *[trace(f"bulk {i}", at=NOW + 2 * DAY) for i in range(20)]]:
        recorder.record(t)
    await recorder.flush()
    return store


def query(**kwargs) -> TraceQuery:
    return TraceQuery(project="default", alias="support", since=NOW - DAY, until=NOW + 3 * DAY,
                      **kwargs)


def prompts_of(store, response) -> list[str]:
    return [p.messages[-1].content for p in load_dataset(store, response.dataset)]


def test_the_window_and_deduplication(store):
    response, counts = build(store, query())
    assert prompts_of(store, response)[:4] == ["a", "b", "c", "d"]  # "old" is out of the window
    assert (counts.scanned, counts.matched, counts.duplicates) == (25, 25, 1)
    assert response.dataset.uri.endswith(f"datasets/{response.dataset.sha256}.jsonl")
    assert response.prompts == 24


@pytest.mark.parametrize(("filters", "expected"), [
    ({"targets": frozenset({"student"})}, ["b", "c"]),
    ({"fallbacks_only": True}, ["b"]),
    ({"validator_failed_only": True}, ["b"]),
    ({"tags": {"team": "billing"}}, ["d"]),
])
def test_filters(store, filters, expected):
    response, _ = build(store, query(**filters))
    assert prompts_of(store, response) == expected


def test_the_cap_samples_with_the_seed_in_trace_order(store):
    first, _ = build(store, query(max_rows=5, seed=7))
    again, _ = build(store, query(max_rows=5, seed=7))
    other, _ = build(store, query(max_rows=5, seed=8))
    assert first.prompts == 5 and first.dataset.sha256 == again.dataset.sha256
    assert first.dataset.sha256 != other.dataset.sha256
    kept = prompts_of(store, first)
    everything = prompts_of(store, build(store, query())[0])
    assert kept == [p for p in everything if p in kept]  # a subsequence: order is kept


def test_answers_become_references_only_when_asked(store):
    plain, _ = build(store, query(fallbacks_only=True))
    with_answers, _ = build(store, query(fallbacks_only=True, answers_as_reference=True))
    (row,) = parse_jsonl(store.get_bytes(store.key_from_uri(plain.dataset.uri)))
    assert not row.HasField("reference") and row.metadata["served_by"] == "support@2:student"
    (row,) = parse_jsonl(store.get_bytes(store.key_from_uri(with_answers.dataset.uri)))
    assert row.reference == "answer to b"


def test_bad_queries_name_the_field(store):
    with pytest.raises(InvalidArgument, match="targets: robot not one of"):
        query(targets=frozenset({"robot"}))
    with pytest.raises(InvalidArgument, match="until: must not be before since"):
        TraceQuery(project="default", alias="support", since=NOW, until=NOW - 1)
    for field in ("start_time", "end_time"):  # a Timestamp protobuf itself calls invalid
        bad = gateway_pb2.CreateDatasetFromTracesRequest(alias="support")
        getattr(bad, field).nanos = -1
        with pytest.raises(InvalidArgument, match=f"{field}: Timestamp is not valid"):
            query_from_request(bad, "default", NOW)
    with pytest.raises(InvalidArgument, match="no traces of alias 'support' match: 25 scanned"):
        build(store, query(tags={"team": "nobody"}))
