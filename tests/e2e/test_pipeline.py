"""The whole suite end to end: five processes, real gRPC, the S3 backend, a teacher behind the
fake OpenAI-compatible server, the real trainer and exporter."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest

from distill.client import DistillClientError
from distill.v1 import common_pb2, gateway_pb2
from tests.e2e.conftest import TEACHER_KEY, TEACHER_KEY_ENV, write_dataset

State = gateway_pb2


def spec(suite, dataset, student, *, steps=2, **fields) -> gateway_pb2.DistillSpec:
    teacher = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                   base_url=suite.fake.openai_base_url,
                                   api_key_env=TEACHER_KEY_ENV, max_tokens=8)
    judge = common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
        mode=common_pb2.MATCH_MODE_LABEL))
    return suite.client.spec(
        dataset=suite.client.upload(dataset), teacher=teacher, student=str(student), judge=judge,
        n_samples=4, top_k=2, min_score=5,
        training={"max_steps": steps, "batch_size": 2, "max_seq_length": 64,
                  "checkpoint_interval": 1},
        **fields)


def wait_for(suite, name, states, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = suite.client.get(name)
        if job.state in states:
            return job
        assert job.state not in (State.JOB_STATE_FAILED,) or State.JOB_STATE_FAILED in states, \
            f"{job.error}\n{suite.logs()}"
        time.sleep(0.2)
    raise AssertionError(f"{name} never reached {states}: {suite.client.get(name)}\n"
                         f"{suite.logs()}")


@pytest.mark.slow
def test_a_whole_job_succeeds_and_promotes_its_alias(suite, tmp_path):
    from services.common.models import prepare_smollm2
    from tests.fixtures.tiny_llama import shared_cache_dir

    suite.fake.configure(replies=["positive", "negative", "Positive!", "meh"])
    student = prepare_smollm2(shared_cache_dir())
    # A few steps teach the answer, not yet to stop at once: the smoke test gets room to finish.
    job = suite.client.distill(spec(suite, write_dataset(tmp_path / "d.jsonl", 6), student,
                                    steps=4, promote_alias="sentiment",
                                    export={"quantizations": ["QUANTIZATION_TYPE_Q8_0"],
                                            "smoke_max_tokens": 256}))
    snapshots = list(suite.client.watch(job.name))
    final = snapshots[-1]
    assert final.state == State.JOB_STATE_SUCCEEDED, f"{final.error}\n{suite.logs()}"
    seen = [s.state for s in snapshots]
    for stage in (State.JOB_STATE_GENERATING, State.JOB_STATE_TRAINING,
                  State.JOB_STATE_EXPORTING):
        assert stage in seen
    assert seen.index(State.JOB_STATE_GENERATING) < seen.index(State.JOB_STATE_TRAINING) < \
        seen.index(State.JOB_STATE_EXPORTING)
    outputs = final.outputs
    for ref in (outputs.candidates, outputs.curated, outputs.adapter, outputs.student_gguf):
        assert ref.uri.startswith("s3://") and len(ref.sha256) == 64
    assert final.judge_statistics.prompts_kept == 6
    assert final.teacher_usage.requests > 0 and final.cost_usd > 0
    assert suite.fake.stats()["completed_samples"] == 24
    alias = suite.client.get_alias("sentiment")
    assert alias.target.job == job.name and alias.target.gguf.uri == outputs.student_gguf.uri
    assert final.promoted_alias_version == alias.version == 1
    gguf = suite.client.download(outputs.student_gguf.uri, tmp_path / "student.gguf")
    assert gguf.read_bytes()[:4] == b"GGUF"
    groups = list(suite.client.candidates(job.name))
    assert len(groups) == 6 and all(len(g["candidates"]) == 4 for g in groups)
    assert {"candidates", "curated", "adapter", "student_gguf"} <= set(
        suite.client.artifacts(job.name))
    curated = list(suite.client.read_jsonl(outputs.curated.uri))
    assert all(c["text"].lower().startswith("positive") for row in curated for c in row["chosen"])
    assert TEACHER_KEY not in suite.logs()


def test_duplicate_request_id_returns_the_same_job(suite, tmp_path, tiny_llama_dir):
    s = spec(suite, write_dataset(tmp_path / "d.jsonl", 2), tiny_llama_dir)
    request_id = str(uuid.uuid4())
    first = suite.client.distill(s, request_id=request_id)
    again = suite.client.distill(s, request_id=request_id)
    assert again.name == first.name
    assert [j.name for j in suite.client.list()] == [first.name]
    suite.client.cancel(first.name)


def test_cancel_stops_spending_within_seconds(suite, tmp_path, tiny_llama_dir):
    suite.fake.configure(latency=0.5)
    s = spec(suite, write_dataset(tmp_path / "d.jsonl", 40), tiny_llama_dir)
    s.limits.max_concurrency = 2  # at most two teacher calls can be on the wire at the cancel
    job = suite.client.distill(s)
    deadline = time.monotonic() + 120
    while suite.fake.stats()["received"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # generation is really spending
    at_cancel = suite.fake.stats()["received"]
    started = time.monotonic()
    cancelled = suite.client.cancel(job.name)
    assert cancelled.state == State.JOB_STATE_CANCELLED
    assert time.monotonic() - started < 10
    time.sleep(1.0)  # calls already dispatched land
    settled = suite.fake.stats()["received"]
    assert settled <= at_cancel + 2
    time.sleep(2.0)
    assert suite.fake.stats()["received"] == settled  # and nothing after that
    assert suite.client.wait(job.name, timeout=10).state == State.JOB_STATE_CANCELLED
    with pytest.raises(DistillClientError) as raised:
        suite.client.cancel(job.name)
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_gateway_restart_resumes_the_job_without_repeating_teacher_calls(suite, tmp_path,
                                                                         tiny_llama_dir):
    suite.fake.configure(latency=0.2, replies=["positive", "negative"])
    s = spec(suite, write_dataset(tmp_path / "d.jsonl", 12), tiny_llama_dir, steps=200)
    s.limits.max_concurrency = 1  # one call (of 4 samples) in flight at a time
    job = suite.client.distill(s)
    deadline = time.monotonic() + 120
    while suite.fake.stats()["completed"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    suite.restart("gateway")  # mid-generation
    resumed = wait_for(suite, job.name, {State.JOB_STATE_TRAINING}, timeout=180)
    assert resumed.outputs.curated.uri
    # No finished call was paid for twice: only the one call in flight at the restart (its
    # answer never reached the teacher cache) may have been asked again.
    stats = suite.fake.stats()
    assert 12 * 4 <= stats["completed_samples"] <= 12 * 4 + 4
    assert all(count in (4, 8) for count in stats["served"].values())
    assert sum(count == 8 for count in stats["served"].values()) <= 1
    wait_for(suite, job.name, {State.JOB_STATE_TRAINING})
    deadline = time.monotonic() + 120
    while not suite.client.get(job.name).outputs.checkpoint.uri and time.monotonic() < deadline:
        time.sleep(0.5)
    assert suite.client.get(job.name).outputs.checkpoint.uri
    suite.restart("gateway")  # mid-training: the trainer resumes from its last checkpoint
    assert wait_for(suite, job.name, {State.JOB_STATE_TRAINING}).outputs.checkpoint.uri
    suite.client.cancel(job.name)


def test_over_budget_job_stops_spending(suite, tmp_path, tiny_llama_dir):
    # Long answers: the up-front estimate (from the short reference answers) passes the budget,
    # the real spending does not.
    suite.fake.configure(latency=0.05, replies=[" ".join(["positive"] * 50)])
    s = spec(suite, write_dataset(tmp_path / "d.jsonl", 200), tiny_llama_dir)
    s.teacher.input_usd_per_mtok = 100.0
    s.teacher.output_usd_per_mtok = 100.0
    s.budget_usd = 1.0
    job = suite.client.distill(s)
    final = suite.client.wait(job.name, timeout=120)
    assert final.state == State.JOB_STATE_FAILED
    assert final.error.code == "RESOURCE_EXHAUSTED" and "budget_usd" in final.error.message
    assert suite.fake.stats()["completed_samples"] < 200 * 4


def test_a_student_that_does_not_fit_the_trainer_is_refused_before_any_spend(suite, tmp_path,
                                                                             tiny_llama_dir):
    s = spec(suite, write_dataset(tmp_path / "d.jsonl", 2), tiny_llama_dir)
    s.training.batch_size = 1024
    s.training.max_seq_length = 32768
    with pytest.raises(DistillClientError) as raised:
        suite.client.distill(s)
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "not enough memory" in raised.value.message
    assert suite.fake.stats()["received"] == 0 and list(suite.client.list()) == []
