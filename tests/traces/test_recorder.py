"""The trace recorder: never waits, bounded memory, redaction before the store, segments that
are datasets."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from services.common.datasets import parse_jsonl
from services.common.storage import LocalStore
from services.common.traces import layout
from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace
from services.common.traces.redaction import redactor
from services.common.traces.retention import sweep

DAY = 86400
NOW = 1_764_720_000.0  # 2025-12-03 00:00 UTC


def trace(text: str, *, alias: str = "support", at: float = NOW, **extra) -> Trace:
    return Trace(project="default", served_by=ServedBy(alias, 3, "teacher", "gpt-4o-mini"),
                 messages=(("system", "Be brief."), ("user", text)), answer=f"re: {text}",
                 created_at=at, **extra)


def stored_lines(store: LocalStore, prefix: str = layout.FOLDER) -> list[dict]:
    return [json.loads(line) for key in sorted(store.list(prefix))
            for line in store.get_bytes(key).splitlines()]


async def test_a_flushed_batch_is_one_segment_per_alias_and_day_and_parses_as_a_dataset(tmp_path):
    store = LocalStore(tmp_path)
    recorder = TraceRecorder(store)
    for i in range(3):
        assert recorder.record(trace(f"q{i}", tags={"team": "a"}))
    recorder.record(trace("other alias", alias="billing"))
    recorder.record(trace("next day", at=NOW + DAY))
    await recorder.flush()

    keys = sorted(store.list(layout.FOLDER))
    assert [k.rsplit("/", 1)[0] for k in keys] == [
        "traces/default/billing/2025-12-03", "traces/default/support/2025-12-03",
        "traces/default/support/2025-12-04"]
    assert recorder.dropped == 0 and len(stored_lines(store)) == 5
    day = stored_lines(store, layout.day_prefix("default", "support", "2025-12-03"))
    assert [line["answer"] for line in day] == ["re: q0", "re: q1", "re: q2"]
    assert day[0]["served_by"] == {"alias": "support", "version": 3, "target": "teacher",
                                   "model": "gpt-4o-mini"}
    # The segment is a dataset as it is: the conversation is the prompt, the answer is metadata.
    prompts = parse_jsonl(store.get_bytes(keys[1]))
    assert len(prompts) == 3 and not prompts[0].HasField("reference")
    assert prompts[0].messages[-1].content == "q0" and '"team":"a"' in prompts[0].metadata["tags"]


class BlockedStore(LocalStore):
    """A store whose writes wait until the test opens the gate: a slow S3."""

    def __init__(self, root):
        super().__init__(root)
        self.gate = threading.Event()
        self.writing = threading.Event()

    def put_bytes(self, *args, **kwargs):
        self.writing.set()
        self.gate.wait()
        return super().put_bytes(*args, **kwargs)


async def test_a_stalled_store_drops_and_counts_traces_and_never_holds_more_than_capacity(
        tmp_path):
    store = BlockedStore(tmp_path)
    recorder = TraceRecorder(store, capacity=10)
    for i in range(4):
        recorder.record(trace(f"first {i}"))
    writing = asyncio.create_task(recorder.flush())  # 4 traces stuck in the store
    await asyncio.to_thread(store.writing.wait)
    accepted = [recorder.record(trace(f"more {i}")) for i in range(20)]
    # 4 being written + 6 buffered = the capacity; the other 14 returned at once, dropped.
    assert accepted == [True] * 6 + [False] * 14 and recorder.dropped == 14
    store.gate.set()
    await writing
    await recorder.flush()
    assert len(stored_lines(store)) == 10 and recorder.failed == 0
    assert recorder.record(trace("room again"))  # the writes freed the capacity


async def test_the_background_writer_flushes_a_full_batch_without_waiting_for_the_interval(
        tmp_path):
    store = LocalStore(tmp_path)
    recorder = TraceRecorder(store, batch_rows=5, flush_seconds=3600)
    writer = asyncio.create_task(recorder.run())
    try:
        for i in range(5):
            recorder.record(trace(f"q{i}"))
        # the full batch wakes the writer (the interval is an hour)
        while len(stored_lines(store)) < 5:
            await asyncio.sleep(0.01)
    finally:
        writer.cancel()


async def test_redaction_happens_before_the_store(tmp_path):
    store = LocalStore(tmp_path)
    recorder = TraceRecorder(store)
    recorder.record(trace("my key is sk-proj-aaaaBBBBccccDDDD1234 and mail me at eve@corp.example "
                          "about ORD-99812"), redactor(["secrets", "emails"], [r"ORD-\d+"]))
    await recorder.flush()

    raw = b"".join(store.get_bytes(k) for k in store.list(""))
    assert b"sk-proj-aaaa" not in raw and b"eve@corp" not in raw and b"ORD-99812" not in raw
    (line,) = stored_lines(store)
    assert line["messages"][1]["content"] == ("my key is [redacted:secrets] and mail me at "
                                              "[redacted:emails] about [redacted]")
    assert line["answer"].startswith("re: my key is [redacted:secrets]")


def test_a_bad_redaction_rule_names_its_field():
    with pytest.raises(Exception, match=r"redaction.patterns\[1\]: invalid regex"):
        redactor([], ["ok", "(a)\\1"])
    with pytest.raises(Exception, match=r"redaction.builtins\[0\]: 'phones' is not one of"):
        redactor(["phones"])


async def test_retention_deletes_whole_days_past_the_setting_and_keeps_the_rest(tmp_path):
    store = LocalStore(tmp_path)
    recorder = TraceRecorder(store)
    for age in (0, 1, 6, 7, 8, 30):
        recorder.record(trace(f"{age} days old", at=NOW - age * DAY))
    await recorder.flush()

    assert sweep(store, now=NOW + 3600, retention_days=7) == 2  # 2025-11-03 and -25
    # Seven whole days before today stay: the 7-day-old day is the last one kept.
    assert sorted(line["messages"][1]["content"] for line in stored_lines(store)) == [
        "0 days old", "1 days old", "6 days old", "7 days old"]
    assert sweep(store, now=NOW + 100 * DAY, retention_days=0) == 0  # 0 keeps everything
