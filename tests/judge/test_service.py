"""The Judge bidi stream end to end over real gRPC on loopback."""

from __future__ import annotations

import json
import threading
import tracemalloc

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from distill.v1 import common_pb2, judge_pb2, judge_pb2_grpc
from services.common.server import Service
from services.common.storage import open_store
from services.judge.server import JudgeService
from services.judge.settings import JudgeSettings
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.waits import wait_for

LABELS = ["positive", "negative"]


def group(i: int, answers: list[str], reference: str) -> common_pb2.CandidateGroup:
    prompt = common_pb2.Prompt(id=f"line-{i}", reference=reference, messages=[
        common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=f"review {i}")])
    return common_pb2.CandidateGroup(prompt=prompt, candidates=[
        common_pb2.Candidate(prompt_id=prompt.id, sample_index=k, text=a)
        for k, a in enumerate(answers)])


def reference_config(**kwargs) -> judge_pb2.JudgeRequest:
    spec = common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
        mode=common_pb2.MATCH_MODE_LABEL))
    return judge_pb2.JudgeRequest(config=judge_pb2.JudgeConfig(judge=spec, **kwargs))


@pytest.fixture
def judge_address(tmp_path):
    store = open_store(f"file://{tmp_path / 'store'}")
    servicer = JudgeService(store, None, max_concurrent_groups=4)
    settings = JudgeSettings(port=0, grace_seconds=0)
    with serve_in_thread(settings, [Service.of(judge_pb2, judge_pb2_grpc, servicer)]) as address:
        yield address, store


def test_groups_are_judged_and_curated(judge_address):
    address, store = judge_address
    groups = [
        group(0, ["positive", "negative", "Positive!", "meh"], "positive"),
        group(1, ["positive", "positive", "positive", "positive"], "negative"),  # all wrong
        group(2, ["negative", "positive", "negative", "negative"], "negative"),
    ]
    requests = [reference_config(top_k=2, min_score=5, job_id="job-1"),
                *(judge_pb2.JudgeRequest(group=g) for g in groups)]
    with grpc.insecure_channel(address) as channel:
        responses = list(judge_pb2_grpc.JudgeServiceStub(channel).Judge(iter(requests),
                                                                        timeout=120))
    judged = {r.group.prompt_id: r.group for r in responses[:-1]}
    summary = responses[-1].summary
    assert set(judged) == {"line-0", "line-1", "line-2"}
    verdicts = [c.verdict for c in judged["line-0"].candidates]
    assert verdicts == [judge_pb2.VERDICT_CHOSEN, judge_pb2.VERDICT_REJECTED,
                        judge_pb2.VERDICT_CHOSEN, judge_pb2.VERDICT_REJECTED]
    assert judged["line-1"].dropped and "under min_score" in judged["line-1"].drop_reason
    stats = summary.statistics
    assert (stats.prompts_total, stats.prompts_kept, stats.prompts_dropped) == (3, 2, 1)
    assert stats.candidates_scored == 12 and stats.judge_errors == 0
    assert stats.score_histogram[10] == 5 and stats.score_histogram[0] == 7
    assert stats.preference_pairs == 2 * 2 + 2 * 1  # line-0: 2x2, line-2: two chosen x one
    rows = [json.loads(line) for line in store.get_bytes(
        store.key_from_uri(summary.curated.uri)).decode().splitlines()]
    assert summary.curated.uri.endswith("jobs/job-1/curated.jsonl")
    assert [r["prompt"]["id"] for r in rows] == ["line-0", "line-2"]
    assert [c["text"] for c in rows[0]["chosen"]] == ["positive", "Positive!"]
    assert [c["score"] for c in rows[0]["rejected"]] == [0.0, 0.0]
    assert rows[0]["pairs"] == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_curated_rows_are_spooled_to_disk_and_stored_in_arrival_order(judge_address):
    """A job's curated rows can outgrow the service's memory: they go to a local spool as
    groups are judged and are stored in arrival order, not held until the stream ends."""
    address, store = judge_address
    text = "x" * 50_000
    config = judge_pb2.JudgeConfig(judge=common_pb2.JudgeSpec(
        length=common_pb2.LengthJudge(min_chars=1)), top_k=2, job_id="big")

    def requests():  # built as they are sent: the test holds none of them
        yield judge_pb2.JudgeRequest(config=config)
        for i in range(200):
            yield judge_pb2.JudgeRequest(group=group(i, [text] * 4, ""))

    held: list[int] = []  # memory allocated since the start, at each judged group
    tracemalloc.start()
    try:
        with grpc.insecure_channel(address) as channel:
            for response in judge_pb2_grpc.JudgeServiceStub(channel).Judge(
                    requests(), timeout=120):
                if response.HasField("group"):
                    held.append(tracemalloc.get_traced_memory()[0])
                else:
                    summary = response.summary
    finally:
        tracemalloc.stop()
    assert len(held) == 200 and summary.statistics.prompts_kept == 200
    assert summary.curated.size_bytes > 40_000_000
    # Kept in memory, the rows would make this grow past the artifact's size by the end.
    assert max(held) < summary.curated.size_bytes / 4, (max(held), summary.curated.size_bytes)
    rows = [json.loads(line) for line in store.get_bytes(
        store.key_from_uri(summary.curated.uri)).decode().splitlines()]
    assert [r["prompt"]["id"] for r in rows] == [f"line-{i}" for i in range(200)]
    assert all(len(c["text"]) == 50_000 for r in rows for c in r["chosen"] + r["rejected"])


@pytest.mark.timeout(60)
def test_redos_pattern_answers_while_health_stays_serving(judge_address):
    """`^(a+)+$` on 25 `a`s and a `!` blocked Python's `re` for 1.4 s per answer (doubling per
    character), and the judge's health checks with it. In RE2 every group is judged at once;
    health is checked from another channel while the stream is open and mid-job."""
    address, _ = judge_address
    evil = "a" * 25 + "!"
    config = judge_pb2.JudgeConfig(judge=common_pb2.JudgeSpec(
        regex=common_pb2.RegexJudge(pattern=r"^(a+)+$")), top_k=1, min_score=5, job_id="redos")
    health_checked = threading.Event()

    def requests():
        yield judge_pb2.JudgeRequest(config=config)
        yield judge_pb2.JudgeRequest(group=group(0, [evil] * 4, ""))
        health_checked.wait(30)
        for i in range(1, 20):
            yield judge_pb2.JudgeRequest(group=group(i, [evil] * 4 + ["aaaa"], ""))

    with grpc.insecure_channel(address) as channel, grpc.insecure_channel(address) as other:
        call = judge_pb2_grpc.JudgeServiceStub(channel).Judge(requests(), timeout=60)
        first = next(call)
        health = health_pb2_grpc.HealthStub(other).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=30)
        health_checked.set()
        rest = list(call)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert first.group.dropped  # no answer matched
    assert [c.score for c in first.group.candidates] == [0, 0, 0, 0]
    summary = rest[-1].summary
    assert summary.statistics.prompts_kept == 19 and summary.statistics.prompts_dropped == 1


def _status(call_requests, address):
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            list(judge_pb2_grpc.JudgeServiceStub(channel).Judge(iter(call_requests), timeout=120))
    return raised.value


def test_first_message_must_be_a_config(judge_address):
    error = _status([judge_pb2.JudgeRequest(group=group(0, ["x"], "x"))], judge_address[0])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "first message" in error.details()


def test_bad_config_names_the_field(judge_address):
    error = _status([reference_config(top_k=99)], judge_address[0])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.top_k" in error.details()


def test_a_second_config_is_refused(judge_address):
    error = _status([reference_config(), reference_config()], judge_address[0])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "only candidate groups" in (
        error.details())


def test_client_that_closes_early_leaves_no_curated_dataset(judge_address):
    address, store = judge_address
    more = threading.Event()

    def requests():
        yield reference_config(job_id="early")
        yield judge_pb2.JudgeRequest(group=group(0, ["positive", "negative"], "positive"))
        more.wait(120)  # hold the stream open until the client has cancelled
        yield judge_pb2.JudgeRequest(group=group(1, ["positive"], "positive"))

    with grpc.insecure_channel(address) as channel:
        call = judge_pb2_grpc.JudgeServiceStub(channel).Judge(requests(), timeout=120)
        first = next(call)
        assert first.group.prompt_id == "line-0"
        call.cancel()
        more.set()
        with pytest.raises(grpc.RpcError) as raised:
            next(call)
        assert raised.value.code() == grpc.StatusCode.CANCELLED
    wait_for(lambda: not list(store.list("jobs/early/")), "the cancelled job's files removed")
    # The server is still healthy for the next stream.
    with grpc.insecure_channel(address) as channel:
        replies = list(judge_pb2_grpc.JudgeServiceStub(channel).Judge(
            iter([reference_config(), judge_pb2.JudgeRequest(group=group(0, ["a"], "a"))]),
            timeout=120))
    assert replies[-1].HasField("summary")
