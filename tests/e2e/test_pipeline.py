"""The whole suite end to end: five processes, real gRPC, the S3 backend, a teacher behind the
fake OpenAI-compatible server, the real trainer and exporter."""

from __future__ import annotations

import json
import time
import uuid

import grpc
import openai
import pytest

from distill.client import DistillClientError
from distill.v1 import common_pb2, gateway_pb2
from tests.e2e.conftest import SMOLLM2_TRAINING, TEACHER_KEY, TEACHER_KEY_ENV, write_dataset
from tests.fixtures import waits

State = gateway_pb2


def spec(suite, dataset, student, *, steps=2, training=None, **fields) -> gateway_pb2.DistillSpec:
    teacher = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                   base_url=suite.fake.openai_base_url,
                                   api_key_env=TEACHER_KEY_ENV, max_tokens=8)
    judge = common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
        mode=common_pb2.MATCH_MODE_LABEL))
    return suite.client.spec(
        dataset=suite.client.upload(dataset), teacher=teacher, student=str(student), judge=judge,
        n_samples=4, top_k=2, min_score=5,
        training={"max_steps": steps, "batch_size": 2, "max_seq_length": 64,
                  "checkpoint_interval": 1, **(training or {})},
        **{"eval": {"holdout_fraction": 0}, **fields})  # evaluation only where a test wants it


def wait_for(suite, name, states, timeout=300):
    seen = []

    def reached() -> bool:
        job = suite.client.get(name)
        assert job.state not in (State.JOB_STATE_FAILED,) or State.JOB_STATE_FAILED in states, \
            f"{job.error}\n{suite.logs()}"
        seen[:] = [job]
        return job.state in states

    waits.wait_for(reached, lambda: f"{name} to reach {states}: {seen}\n{suite.logs()}", timeout)
    return seen[0]


@pytest.mark.slow
def test_a_whole_job_evaluates_then_promotes_only_past_the_gate(suite, tmp_path):
    from services.common.models import prepare_smollm2
    from tests.fixtures.tiny_llama import shared_cache_dir

    suite.fake.configure(replies=["positive", "negative", "Positive!", "meh"])
    student = prepare_smollm2(shared_cache_dir())
    # Half of the 6 prompts are held out for the evaluation; a ratio of 0 and no floor always
    # promote (tests/e2e/test_eval_floor.py has the floor).
    s = spec(suite, write_dataset(tmp_path / "d.jsonl", 6), student, training=SMOLLM2_TRAINING,
             promote_alias="sentiment", eval={"holdout_fraction": 0.5, "promote_min_ratio": 0,
                                              "promote_min_pass_rate": 0},
             export={"quantizations": ["QUANTIZATION_TYPE_Q8_0"], "smoke_max_tokens": 256})
    job = suite.client.distill(s)
    snapshots = list(suite.client.watch(job.name))
    final = snapshots[-1]
    assert final.state == State.JOB_STATE_SUCCEEDED, f"{final.error}\n{suite.logs()}"
    seen = [s.state for s in snapshots]
    order = [State.JOB_STATE_GENERATING, State.JOB_STATE_TRAINING, State.JOB_STATE_EXPORTING,
             State.JOB_STATE_EVALUATING]
    assert all(stage in seen for stage in order)
    assert [seen.index(stage) for stage in order] == sorted(seen.index(st) for st in order)
    outputs = final.outputs
    for ref in (outputs.candidates, outputs.curated, outputs.adapter, outputs.student_gguf,
                outputs.train_dataset, outputs.held_out, outputs.base_gguf, outputs.evaluation):
        assert ref.uri.startswith("s3://") and len(ref.sha256) == 64
    assert final.judge_statistics.prompts_total == final.judge_statistics.prompts_kept == 3
    assert final.teacher_usage.requests > 0 and final.cost_usd > 0
    assert suite.fake.stats()["completed_samples"] == 3 * 4 + 3  # training set + held-out

    evaluation = final.evaluation
    assert evaluation.prompts == 3
    models = {m.model: m for m in evaluation.models}
    assert set(models) == {"teacher", "student", "base"}
    for m in models.values():
        assert 0 <= m.mean_score <= 10 and 0 <= m.pass_rate <= 1 and m.latency_seconds_mean > 0
    assert models["student"].cost_per_1k_requests_usd > 0  # the machine's time
    assert evaluation.student_wins + evaluation.student_ties + evaluation.student_losses == 3
    assert evaluation.promoted and evaluation.promotion_reason.startswith("passed the eval gate")
    rows = list(suite.client.read_jsonl(outputs.evaluation.uri))
    held = [json.loads(line) for line in suite.client.download(
        outputs.held_out.uri, tmp_path / "held.jsonl").read_text().splitlines()]
    assert len(rows) == len(held) == 3
    for row in rows:
        assert set(row["answers"]) == {"teacher", "student", "base"}
        assert row["reference"] == "positive"
        for answer in row["answers"].values():
            assert answer["passed"] == (answer["score"] == 10)
    scored = [row["answers"]["student"]["score"] for row in rows]
    assert models["student"].mean_score == pytest.approx(sum(scored) / 3)

    alias = suite.client.get_alias("sentiment")
    assert alias.target.job == job.name and alias.target.gguf.uri == outputs.student_gguf.uri
    assert final.promoted_alias_version == alias.version == 1
    gguf = suite.client.download(outputs.student_gguf.uri, tmp_path / "student.gguf")
    assert gguf.read_bytes()[:4] == b"GGUF"
    # The promoted alias answers through the router, with OpenAI's SDK (issue 21).
    router = openai.OpenAI(base_url=suite.router_url(), api_key="unused", max_retries=0)
    reply = router.chat.completions.create(
        model="sentiment", messages=[{"role": "user", "content": "Review: I loved it. Sentiment?"}],
        max_tokens=8, temperature=0)
    assert reply.choices[0].message.content and reply.model_extra["distill"]["model"] == job.name
    groups = list(suite.client.candidates(job.name))
    assert len(groups) == 3 and all(len(g["candidates"]) == 4 for g in groups)
    assert {"candidates", "curated", "adapter", "student_gguf"} <= set(
        suite.client.artifacts(job.name))
    curated = list(suite.client.read_jsonl(outputs.curated.uri))
    assert all(c["text"].lower().startswith("positive") for row in curated for c in row["chosen"])
    assert TEACHER_KEY not in suite.logs()
    page = suite.client.download_report(job.name, tmp_path / "report")
    data = json.loads((page.parent / "report.json").read_text())
    assert data["evaluation"]["available"] and data["training"]["available"]
    assert {"loss.png", "candidate_scores.png", "evaluation.png", "cost.png"} <= {
        p.name for p in page.parent.iterdir()}
    assert "student (trained)" in page.read_text()

    # The same job with a gate no student can pass: it succeeds without promoting and says
    # why. Every teacher answer (training and held-out) comes from the cache, and the base GGUF
    # made by the first job is reused.
    s.eval.promote_min_ratio = 100
    second = suite.client.wait(suite.client.distill(s).name, timeout=600)
    assert second.state == State.JOB_STATE_SUCCEEDED, f"{second.error}\n{suite.logs()}"
    assert not second.evaluation.promoted and second.promoted_alias_version == 0
    assert second.evaluation.promotion_reason.startswith("below the eval gate")
    assert "10000% required" in second.evaluation.promotion_reason
    assert suite.client.get_alias("sentiment").version == 1
    assert suite.fake.stats()["completed_samples"] == 3 * 4 + 3
    assert second.outputs.base_gguf.uri == outputs.base_gguf.uri


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
    fake = suite.fake.server
    waits.wait_for(lambda: fake.received >= 2, "generation is really spending")
    cancelled = suite.client.cancel(job.name)
    assert cancelled.state == State.JOB_STATE_CANCELLED
    at_cancel = fake.received
    # Calls dispatched before the cancel land and end: at most max_concurrency of them had not
    # reached the fake yet (a loaded machine may hold them on the way, never make more).
    waits.wait_for(lambda: fake.in_flight == 0, "calls already dispatched end")
    time.sleep(2.0)  # negative check: four teacher latencies go by and no new call comes
    assert fake.received <= at_cancel + 2 and fake.in_flight == 0
    assert suite.client.wait(job.name, timeout=120).state == State.JOB_STATE_CANCELLED
    with pytest.raises(DistillClientError) as raised:
        suite.client.cancel(job.name)
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_gateway_restart_resumes_the_job_without_repeating_teacher_calls(suite, tmp_path,
                                                                         tiny_llama_dir):
    suite.fake.configure(latency=0.2, replies=["positive", "negative"])
    s = spec(suite, write_dataset(tmp_path / "d.jsonl", 12), tiny_llama_dir, steps=200)
    s.limits.max_concurrency = 1  # one call (of 4 samples) in flight at a time
    job = suite.client.distill(s)
    waits.wait_for(lambda: suite.fake.server.completed >= 3, "three teacher calls answered")
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
    waits.wait_for(lambda: suite.client.get(job.name).outputs.checkpoint.uri,
                   lambda: f"a checkpoint\n{suite.logs()}")
    suite.restart("gateway")  # mid-training: the trainer resumes from its last checkpoint
    assert wait_for(suite, job.name, {State.JOB_STATE_TRAINING}).outputs.checkpoint.uri
    suite.client.cancel(job.name)


def test_a_generator_restart_mid_generation_neither_fails_the_job_nor_pays_twice(
        suite, tmp_path, tiny_llama_dir):
    suite.fake.configure(latency=0.2, replies=["positive", "negative"])
    s = spec(suite, write_dataset(tmp_path / "d.jsonl", 60), tiny_llama_dir, steps=200)
    s.limits.max_concurrency = 1  # 60 calls of 0.2 s: still generating after the 5 s grace
    job = suite.client.distill(s)
    waits.wait_for(lambda: suite.fake.server.completed >= 3, "three teacher calls answered")
    suite.restart("generator")  # its stream breaks once the grace period is over
    resumed = wait_for(suite, job.name, {State.JOB_STATE_TRAINING}, timeout=180)
    assert "stage stream lost; running it again" in suite.suite.processes["gateway"].log()
    assert resumed.outputs.curated.uri
    # Only the call in flight when the generator stopped may have been asked twice...
    stats = suite.fake.stats()
    assert 60 * 4 <= stats["completed_samples"] <= 60 * 4 + 4
    assert sum(count == 8 for count in stats["served"].values()) <= 1
    # ...and the job's usage counts what was paid before the restart too, once: the fake
    # teacher answers one word (one output token) per sample.
    assert stats["completed_samples"] - 4 <= resumed.teacher_usage.output_tokens \
        <= stats["completed_samples"]
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
    # Not even one prompt fits: 2 answers x 2**20 tokens need ~17 GB for the tiny Llama even with
    # gradient checkpointing, and the suite's trainer declares 8 GB (conftest). A smaller batch is
    # what the trainer would fall back to, so the batch alone is not enough to be refused.
    s.training.batch_size = 4
    s.training.max_seq_length = 1 << 20
    with pytest.raises(DistillClientError) as raised:
        suite.client.distill(s)
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "not enough memory" in raised.value.message
    assert "even batch_size 1 needs about" in raised.value.message
    assert "max_seq_length" in raised.value.message.split("It would fit with")[1]
    assert suite.fake.stats()["received"] == 0 and list(suite.client.list()) == []
