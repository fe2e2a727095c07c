"""DeleteJob: what goes with a job, what stays, and when it is refused."""

from __future__ import annotations

import asyncio

import pytest

from distill.v1 import gateway_pb2
from services.common import errors
from services.common.auth import DEFAULT_PROJECT
from services.common.storage.local import LocalStore
from services.gateway.aliases import Aliases
from services.gateway.deletion import Deleted, delete_job
from services.gateway.events import JobEvents
from services.gateway.job_store import JobStore

JOB = "jobs/0123456789abcdef"
OTHER = "jobs/0123456789abcdee"


@pytest.fixture
def parts(tmp_path):
    events = JobEvents(tmp_path / "g.db")
    store = JobStore(tmp_path / "g.db", on_save=events.record)
    artifacts = LocalStore(tmp_path / "store")
    for key in (f"{JOB}/curated.jsonl", f"{JOB}/adapter/adapter.safetensors",
                f"{JOB}-eval-student/candidates/candidates.jsonl",
                f"{JOB}-expand-r1/candidates/candidates.jsonl", f"{OTHER}/curated.jsonl",
                "datasets/abc.jsonl", "models/base/x/Q8_0.gguf", "cache/teacher/ab/cd"):
        artifacts.put_bytes(key, b"x")
    store.create_job(gateway_pb2.Job(name=JOB, state=gateway_pb2.JOB_STATE_TRAINING))
    return store, events, Aliases(store), artifacts


def _delete(parts):
    return asyncio.run(delete_job(JOB, DEFAULT_PROJECT, *parts))


def test_a_running_job_is_refused_and_keeps_everything(parts):
    with pytest.raises(errors.FailedPrecondition, match="is training: cancel it first"):
        _delete(parts)
    assert parts[0].get_job(JOB).name == JOB
    assert len(list(parts[3].list(f"{JOB}/"))) == 2


def test_a_job_an_alias_serves_is_refused_until_the_alias_moves(parts):
    store, events, _, artifacts = parts
    job = store.get_job(JOB)
    job.state = gateway_pb2.JOB_STATE_SUCCEEDED
    store.save_job(job)
    store.set_alias("bot", gateway_pb2.AliasTarget(job=JOB), 0)
    with pytest.raises(errors.FailedPrecondition, match="alias 'bot' serves its student"):
        _delete(parts)
    store.set_alias("bot", gateway_pb2.AliasTarget(job=OTHER), 1)
    # its folder (2 objects), its evaluation run's (1) and its expansion round's (1)
    assert _delete(parts) == Deleted(artifacts=4, cache_entries=0)
    with pytest.raises(errors.NotFound):
        store.get_job(JOB)
    assert events.list(job)[0] == []
    assert sorted(artifacts.list("")) == [
        "cache/teacher/ab/cd", "datasets/abc.jsonl", f"{OTHER}/curated.jsonl",
        "models/base/x/Q8_0.gguf"]
    # the alias's history still names the deleted job: rolling back to it is refused
    with pytest.raises(errors.FailedPrecondition, match=f"points at {JOB}, which was deleted"):
        Aliases(store).rollback("bot", 1, 0)
    assert store.get_alias("bot").target.job == OTHER
