"""The job event log: which snapshots make events, paging, a restarted gateway, log records."""

from __future__ import annotations

import asyncio
import logging

import pytest

from distill.v1 import gateway_pb2
from services.common import errors
from services.gateway import events as events_module
from services.gateway.events import JobEvents, LogRecorder
from services.gateway.job_store import JobStore

S = gateway_pb2


def _job(state, message="", name="jobs/abc"):
    job = S.Job(name=name, state=state)
    job.progress.message = message
    return job


def _messages(log: JobEvents, job: S.Job) -> list[tuple[str, str]]:
    found, _ = log.list(job, page_size=1000)
    return [(S.JobEventKind.Name(e.kind).removeprefix("JOB_EVENT_KIND_"), e.message)
            for e in found]


def test_state_and_step_changes_are_events_counters_are_not(tmp_path):
    log = JobEvents(tmp_path / "g.db")
    log.record(_job(S.JOB_STATE_PENDING, "queued"))
    log.record(_job(S.JOB_STATE_GENERATING, "generating"))
    for _ in range(3):  # progress counters move; nothing a user follows changed
        log.record(_job(S.JOB_STATE_GENERATING, "generating"))
    log.record(_job(S.JOB_STATE_TRAINING, "waiting for a trainer"))
    log.record(_job(S.JOB_STATE_TRAINING, "training on cpu (torch)"))
    warned = _job(S.JOB_STATE_TRAINING, "training on cpu (torch)")
    warned.warnings.append("the teacher gets 25 % of these right")
    log.record(warned)
    log.record(warned)
    failed = _job(S.JOB_STATE_FAILED, "training on cpu (torch)")
    failed.warnings.append("the teacher gets 25 % of these right")
    failed.error.CopyFrom(S.JobError(code="INTERNAL", message="boom"))
    log.record(failed)
    assert _messages(log, failed) == [
        ("STATE", "pending"), ("PROGRESS", "queued"), ("STATE", "generating"),
        ("PROGRESS", "generating"), ("STATE", "training"),
        ("PROGRESS", "waiting for a trainer"), ("PROGRESS", "training on cpu (torch)"),
        ("WARNING", "the teacher gets 25 % of these right"), ("STATE", "failed"),
        ("ERROR", "INTERNAL: boom")]


def test_pages_follow_a_running_job_and_end_with_a_finished_one(tmp_path):
    log = JobEvents(tmp_path / "g.db")
    running = _job(S.JOB_STATE_GENERATING, "generating")
    log.record(_job(S.JOB_STATE_PENDING, "queued"))
    log.record(running)
    first, token = log.list(running, page_size=3)
    assert len(first) == 3 and token
    rest, token = log.list(running, page_size=3, page_token=token)
    assert len(rest) == 1 and token  # running: a token to come back with
    none_yet, same = log.list(running, page_size=3, page_token=token)
    assert none_yet == [] and same == token
    done = _job(S.JOB_STATE_SUCCEEDED, "done")
    log.record(done)
    last, token = log.list(done, page_size=3, page_token=token)
    assert [e.message for e in last] == ["succeeded"] and token == ""
    with pytest.raises(errors.InvalidArgument, match="page_token"):
        log.list(done, page_token="garbage")
    with pytest.raises(errors.InvalidArgument, match="page_size: must be >= 0"):
        log.list(done, page_size=-1)


def test_a_restarted_gateway_does_not_repeat_what_the_log_shows(tmp_path):
    log = JobEvents(tmp_path / "g.db")
    log.record(_job(S.JOB_STATE_TRAINING, "training on cpu (torch)"))
    log.close()
    again = JobEvents(tmp_path / "g.db")
    again.record(_job(S.JOB_STATE_TRAINING, "training on cpu (torch)"))  # resumed, unchanged
    again.record(_job(S.JOB_STATE_EXPORTING, "exporting"))
    assert [m for _, m in _messages(again, _job(S.JOB_STATE_EXPORTING))] == [
        "training", "training on cpu (torch)", "exporting", "exporting"]


def test_the_job_store_feeds_the_log_and_deleting_clears_it(tmp_path):
    log = JobEvents(tmp_path / "g.db")
    store = JobStore(tmp_path / "g.db", on_save=log.record)
    job = _job(S.JOB_STATE_PENDING, "queued")
    store.create_job(job)
    job.state = S.JOB_STATE_CANCELLED
    store.save_job(job)
    assert [m for _, m in _messages(log, job)] == ["pending", "queued", "cancelled"]
    log.delete(job.name)
    store.delete_job(job.name)
    assert _messages(log, job) == []
    with pytest.raises(errors.NotFound):
        store.get_job(job.name)


def test_retries_and_warnings_logged_while_a_job_runs_are_its_events(tmp_path):
    log = JobEvents(tmp_path / "g.db")
    log.record(_job(S.JOB_STATE_GENERATING, "generating"))
    recorder = LogRecorder(log)
    logger = logging.getLogger("distill.gateway.test-events")
    logger.addHandler(recorder)

    async def runner() -> None:
        events_module.running("jobs/abc")
        logger.warning("stage stream lost; running it again",
                       extra={"stage": "generate", "reason": "UNAVAILABLE", "attempt": 2})
        logger.info("placed")  # routine: not an event

    try:
        asyncio.run(runner())
        logger.warning("trainer lost mid-training; task back in the queue",
                       extra={"job_id": "abc", "replica": "127.0.0.1:1", "moves": 1})
        logger.warning("no job here")  # outside any job: not recorded
    finally:
        logger.removeHandler(recorder)
    assert _messages(log, _job(S.JOB_STATE_GENERATING))[2:] == [
        ("RETRY", "stage stream lost; running it again (stage generate, reason UNAVAILABLE, "
                  "attempt 2)"),
        ("RETRY", "trainer lost mid-training; task back in the queue (replica 127.0.0.1:1)")]
