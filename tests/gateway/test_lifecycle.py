"""The job lifecycle: every change of state is saved and published; a job CancelJob is
stopping stays CANCELLING whatever its runner reports and ends CANCELLED; spend is added to
the job and the budget stops it. A real SQLite job store and the in-process hub."""

from __future__ import annotations

import pytest

from distill.v1 import gateway_pb2
from services.common import errors
from services.common.spend import Spend
from services.gateway.job_store import JobStore
from services.gateway.lifecycle import Lifecycle
from services.gateway.watch import JobHub

S = gateway_pb2


@pytest.fixture
def lifecycle(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    yield Lifecycle(store, JobHub())
    store.close()


def new_job(lifecycle: Lifecycle, **spec) -> gateway_pb2.Job:
    job, created = lifecycle.create(S.Job(name="jobs/j1", spec=S.DistillSpec(**spec)))
    assert created
    return job


def stored(lifecycle: Lifecycle, job: gateway_pb2.Job) -> gateway_pb2.Job:
    return lifecycle.store.get_job(job.name)


def test_a_job_moves_through_its_stages_and_every_change_is_saved(lifecycle):
    job = new_job(lifecycle)
    assert stored(lifecycle, job).state == S.JOB_STATE_PENDING
    lifecycle.enter(job, S.JOB_STATE_GENERATING, "prompts", "generating")
    assert stored(lifecycle, job).progress.message == "generating"
    lifecycle.enter(job, S.JOB_STATE_JUDGING, "prompts", "judging the last groups", done=3,
                    total=3)
    got = stored(lifecycle, job)
    assert (got.state, got.progress.done, got.progress.total) == (S.JOB_STATE_JUDGING, 3, 3)
    lifecycle.succeed(job)
    assert stored(lifecycle, job).state == S.JOB_STATE_SUCCEEDED
    with pytest.raises(errors.FailedPrecondition, match="already JOB_STATE_SUCCEEDED"):
        lifecycle.request_cancel(job.name)


def test_a_failure_names_the_stage(lifecycle):
    job = new_job(lifecycle)
    lifecycle.enter(job, S.JOB_STATE_TRAINING, "steps", "training")
    lifecycle.fail(job, "UNAVAILABLE", "trainer: gone")
    got = stored(lifecycle, job)
    assert got.state == S.JOB_STATE_FAILED
    assert (got.error.code, got.error.stage) == ("UNAVAILABLE", S.JOB_STATE_TRAINING)


def test_a_cancelled_job_stays_cancelling_then_ends_cancelled_not_failed(lifecycle):
    job = new_job(lifecycle)
    lifecycle.enter(job, S.JOB_STATE_GENERATING, "prompts", "generating")
    lifecycle.request_cancel(job.name)
    assert stored(lifecycle, job).state == S.JOB_STATE_CANCELLING
    lifecycle.enter(job, S.JOB_STATE_JUDGING, "prompts", "judging")  # a late runner event
    assert stored(lifecycle, job).state == S.JOB_STATE_CANCELLING
    lifecycle.fail(job, "CANCELLED", "generator: cancelled")  # the stream we stopped
    assert stored(lifecycle, job).state == S.JOB_STATE_CANCELLED
    assert lifecycle.finish_cancel(job.name).state == S.JOB_STATE_CANCELLED
    assert not lifecycle.cancelling(job.name)


def test_cancelling_a_job_no_runner_holds_ends_it_cancelled(lifecycle):
    job = new_job(lifecycle)
    lifecycle.request_cancel(job.name)
    assert lifecycle.finish_cancel(job.name).state == S.JOB_STATE_CANCELLED


def test_spend_is_added_and_the_budget_stops_the_job(lifecycle):
    job = new_job(lifecycle, budget_usd=1.0)
    lifecycle.charge(job, teacher=Spend(requests=4, cost_usd=0.5))
    lifecycle.charge(job, judge=Spend(requests=1, cost_usd=0.25))
    assert (job.teacher_usage.requests, job.cost_usd) == (4, 0.75)
    with pytest.raises(errors.ResourceExhausted, match="budget_usd 1 reached"):
        lifecycle.charge(job, teacher=Spend(requests=1, cost_usd=0.25))
    lifecycle.update(job)
    got = stored(lifecycle, job)
    assert (got.teacher_usage.cost_usd, got.judge_usage.cost_usd, got.cost_usd) == \
        (0.75, 0.25, 1.0)


def test_after_a_restart_a_job_being_cancelled_ends_and_the_others_resume(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    before = Lifecycle(store, JobHub())
    running, cancelled = (before.create(S.Job(name=f"jobs/{n}"))[0] for n in ("a", "b"))
    before.request_cancel(cancelled.name)
    after = Lifecycle(store, JobHub())  # a new gateway on the same store
    assert [j.name for j in after.unfinished()] == [running.name]
    assert store.get_job(cancelled.name).state == S.JOB_STATE_CANCELLED
    store.close()
