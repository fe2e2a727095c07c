"""Traces over the gateway's real gRPC API, the SDK and the CLI: list the days, export a
dataset, and hand its URI to Estimate as it is."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import grpc
import pytest

from distill.client import DistillClientError
from distill.v1 import common_pb2, gateway_pb2
from services.common.storage import LocalStore
from services.common.traces.layout import day_of
from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace
from tests.fixtures.gateway import running_gateway
from tests.fixtures.processes import REPO


@pytest.fixture
def gateway(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    now = time.time()
    today = now - now % 86400  # every trace today and before now, whenever the test runs
    recorder = TraceRecorder(LocalStore(tmp_path / "store"))
    for i, target in enumerate(["teacher"] * 6 + ["student"] * 2):
        recorder.record(Trace(
            project="default", served_by=ServedBy("support", 1, target, "m"),
            messages=(("user", f"How do I reset password {i % 5}?"),), answer=f"answer {i}",
            created_at=today + (now - today) * (1 - i / 16),
            fallback_reason="validator" if i == 7 else None))
    asyncio.run(recorder.flush())
    with running_gateway(tmp_path) as (client, address):
        yield client, address, tmp_path


def test_export_through_the_sdk_gives_a_dataset_estimate_accepts(gateway):
    client, _, _ = gateway
    (day,) = client.trace_days("support")
    assert day.day == day_of(time.time()) and day.segments == 1 and day.size_bytes > 0
    result = client.dataset_from_traces("support", targets=["teacher"])
    # 6 teacher traces, prompts 0..4 then 0 again: one duplicate dropped
    assert (result.traces_scanned, result.traces_matched, result.duplicates_dropped,
            result.prompts) == (8, 6, 1, 5)
    spec = gateway_pb2.DistillSpec(dataset=result.dataset, student_model="smollm2-135m",
                                   teacher=common_pb2.ModelSpec(model="gpt-4o-mini"))
    spec.judge.judge.llm.SetInParent()
    assert client.estimate(spec).prompts == 5
    fallbacks = client.dataset_from_traces("support", fallbacks_only=True)
    assert [r["messages"][-1]["content"] for r in client.read_jsonl(fallbacks.dataset.uri)] == [
        "How do I reset password 2?"]


def test_no_matching_trace_and_a_bad_alias_are_invalid_argument(gateway):
    client, _, _ = gateway
    with pytest.raises(DistillClientError) as caught:
        client.dataset_from_traces("support", tags={"team": "none"})
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "no traces of alias 'support' match: 8 scanned" in str(caught.value)
    with pytest.raises(DistillClientError) as caught:
        client.trace_days("Not An Alias")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "alias:" in str(caught.value)
    assert client.trace_days("nobody") == []


def test_the_cli_exports_prints_the_uri_and_downloads(gateway):
    _, address, tmp = gateway
    run = subprocess.run(
        [sys.executable, "-m", "distill.cli", "--gateway", address, "traces", "export", "support",
         "--since", "1d", "--max-rows", "3", "--seed", "4", "--out", str(tmp / "ds.jsonl")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    uri = run.stdout.strip().splitlines()[-1]
    assert "/datasets/" in uri and uri.endswith(".jsonl")
    assert len((tmp / "ds.jsonl").read_text().splitlines()) == 3
    bad = subprocess.run(
        [sys.executable, "-m", "distill.cli", "--gateway", address, "traces", "export", "support",
         "--since", "yesterday"], cwd=REPO, capture_output=True, text=True, timeout=120,
        check=False)
    assert bad.returncode != 0 and "'yesterday' is not a time" in bad.stderr
