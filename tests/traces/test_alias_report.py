"""The alias page over the gateway's real gRPC API: numbers from the traces, plots, the version
history with reasons, escaping, and bad requests."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest

from distill.client import DistillClientError
from services.common.storage import LocalStore
from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace
from tests.fixtures.gateway import running_gateway

HOUR = 3600


@pytest.fixture
def gateway(tmp_path):
    with running_gateway(tmp_path) as (client, _):
        yield client, tmp_path


def record(store_root, now: float) -> None:
    """9 teacher answers (1 a fallback after a failed student answer) and 3 student answers
    (2 passed the validator and were judged, 1 failed), plus one shadow answer, over the last 3
    hours."""
    recorder = TraceRecorder(LocalStore(store_root))

    def add(target, hours_ago, **kw):
        recorder.record(Trace(project="default", served_by=ServedBy("bot", 1, target, "m"),
                              messages=(("user", "hi"),), answer="a",
                              created_at=now - hours_ago * HOUR, **kw))

    for i in range(8):
        add("teacher", i % 3, latency_seconds=1.0, cost_usd=0.002)
    add("teacher", 0, latency_seconds=1.5, cost_usd=0.002, fallback_reason="validator failed")
    add("student", 1, latency_seconds=0.1, cost_usd=0.0001, validator="passed",
        judge_score=9.0, judge_cost_usd=0.0001)
    add("student", 1, latency_seconds=0.1, cost_usd=0.0001, validator="passed",
        judge_score=6.0, judge_cost_usd=0.0001)
    add("student", 0, latency_seconds=0.2, cost_usd=0.0001, validator="failed")
    add("student", 0, latency_seconds=0.1, validator="passed", shadow=True)
    asyncio.run(recorder.flush())


def test_the_alias_page_counts_traffic_fallbacks_and_versions(gateway):
    client, tmp = gateway
    client.set_alias("bot", teacher="gpt-4o-mini", description="start on the teacher")
    client.set_alias("bot", teacher="gpt-4o", expected_version=1,
                     description="<script>alert(1)</script> canary")
    record(tmp / "store", time.time())

    index = client.download_alias_report("bot", tmp / "page", window_days=1)
    data = json.loads((index.parent / "report.json").read_text())
    assert data["totals"] == {"requests": 12, "fallbacks": 1, "fallback_rate": 1 / 12}
    targets = {t["target"]: t for t in data["targets"]}
    assert targets["teacher"]["requests"] == 9 and targets["student"]["requests"] == 3
    assert targets["student"]["share"] == 0.25 and targets["student (shadow)"]["share"] is None
    assert targets["student"]["validator_pass_rate"] == 2 / 3
    assert targets["teacher"]["validator_pass_rate"] is None
    assert targets["student"]["judge_score"] == 7.5 and targets["student"]["judged"] == 2
    assert targets["student"]["judge_cost_usd"] == pytest.approx(0.0002)
    assert targets["teacher"]["judge_score"] is None and targets["teacher"]["judged"] == 0
    assert targets["teacher"]["cost_per_1k_requests_usd"] == pytest.approx(2.0)
    assert targets["teacher"]["latency_p50_seconds"] == 1.0
    assert data["window"]["bucket_seconds"] == HOUR
    assert sum(data["traffic"]["series"]["teacher"]) == 9
    assert [v["reason"] for v in data["history"]] == [
        "start on the teacher", "<script>alert(1)</script> canary"]
    page = index.read_text()
    assert "<th>judge score</th>" in page and '<td class="num">7.50</td>' in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert (index.parent / "traffic.png").read_bytes()[:4] == b"\x89PNG"
    assert (index.parent / "targets.png").read_bytes()[:4] == b"\x89PNG"


def test_an_alias_without_traffic_still_has_a_page_and_bad_requests_are_refused(gateway):
    client, tmp = gateway
    client.set_alias("quiet", teacher="gpt-4o-mini")
    index = client.download_alias_report("quiet", tmp / "quiet")
    data = json.loads((index.parent / "report.json").read_text())
    assert data["totals"]["requests"] == 0 and data["plots"] == {}
    assert data["window"]["bucket_seconds"] == 86400  # the default window: 7 days, per day
    assert "no traffic" in index.read_text()
    with pytest.raises(DistillClientError) as caught:
        client.download_alias_report("nobody", tmp / "x")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(DistillClientError) as caught:
        client.download_alias_report("quiet", tmp / "x", window_days=5000)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "window_days" in str(caught.value)
