"""DeleteJob's teacher-cache cleanup, as plain functions on the real S3 server: a deleted job
takes the entries only it used, leaves those another job of its project names and every other
project's, waits while a job of its project runs, and an old job without manifests takes
nothing. The whole path over gRPC with a real generator: test_cache_release_service.py."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest

from distill.v1 import gateway_pb2
from services.common.specs.layout import JobKeys, released_cache_prefix, teacher_cache_prefix
from services.common.storage import LocalStore, open_store
from services.common.teacher_cache import entry_key
from services.gateway import cache_release
from services.gateway.aliases import Aliases
from services.gateway.deletion import Deleted, delete_job
from services.gateway.events import JobEvents
from services.gateway.job_store import JobStore
from services.gateway.retention import DAY, Retention, sweep
from tests.fixtures.s3_server import s3_server  # noqa: F401 - the pytest fixture

A, B, RUNNING = "jobs/aaaaaaaaaaaaaaaa", "jobs/bbbbbbbbbbbbbbbb", "jobs/cccccccccccccccc"
THEIRS = "jobs/dddddddddddddddd"  # project beta's


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class World:
    """A store, a job store, and helpers to write what generator runs would."""

    def __init__(self, artifacts, tmp_path) -> None:
        self.artifacts = artifacts
        self.events = JobEvents(tmp_path / "g.db")
        self.jobs = JobStore(tmp_path / "g.db", on_save=self.events.record)

    def job(self, name: str, state=gateway_pb2.JOB_STATE_SUCCEEDED, project="default") -> None:
        self.jobs.create_job(gateway_pb2.Job(name=name, state=state, project=project))

    def run(self, run_id: str, names: list[str], project: str = "default") -> None:
        """A generator run of `run_id` that used these entries: they are cached, and named by
        a manifest of its own."""
        for name in names:
            self.artifacts.put_bytes(entry_key(teacher_cache_prefix(project), key(name)), b"{}")
        body = "".join(f"{key(n)}\n" for n in names).encode()
        self.artifacts.put_bytes(JobKeys(run_id).cache_manifest(uuid.uuid4().hex), body)

    def cached(self, project: str = "default") -> set[str]:
        """The entries left in the project's own folder, by name."""
        folder = teacher_cache_prefix(project)
        here = {k.removeprefix(folder).removesuffix(".json") for k in self.artifacts.list(folder)
                if "/" not in k.removeprefix(folder)}
        return {n for n in NAMES if key(n) in here}

    def delete(self, name: str, project: str = "default") -> Deleted:
        return asyncio.run(delete_job(name, project, self.jobs, self.events,
                                      Aliases(self.jobs), self.artifacts))


NAMES = ["a1", "a2", "a-eval", "a-expand", "s1", "s2", "b1", "old"]


@pytest.fixture
def world(tmp_path, s3_server):  # noqa: F811 - the fixture above
    artifacts = open_store(f"s3://cache-{uuid.uuid4().hex[:12]}", **s3_server.store_settings())
    w = World(artifacts, tmp_path)
    w.job(A)
    w.job(B)
    w.run(A.removeprefix("jobs/"), ["a1", "a2", "s1", "s2"])
    w.run(A.removeprefix("jobs/") + "-eval-teacher", ["a-eval", "s1"])
    w.run(A.removeprefix("jobs/") + "-expand-r1", ["a-expand"])
    w.run(B.removeprefix("jobs/"), ["s1", "s2", "b1"])
    # an entry of a job deleted before manifests existed: named by no manifest
    w.artifacts.put_bytes(entry_key(teacher_cache_prefix("default"), key("old")), b"{}")
    # project beta used the same prompts: its own entries, under the same keys
    w.job(THEIRS, project="beta")
    w.run(THEIRS.removeprefix("jobs/"), ["a1", "a2", "s1", "b1"], project="beta")
    yield w
    w.jobs.close()
    w.events.close()


def test_a_deleted_job_takes_the_entries_only_it_used(world):
    deleted = world.delete(A)
    # its folder's manifest, and its evaluation's and expansion's runs' (one manifest each)
    assert deleted == Deleted(artifacts=3, cache_entries=4)
    assert world.cached() == {"s1", "s2", "b1", "old"}
    assert world.cached("beta") == {"a1", "a2", "s1", "b1"}
    assert list(world.artifacts.list("cache/released/")) == []

    assert world.delete(B).cache_entries == 3
    assert world.cached() == {"old"}  # only what no manifest names: it goes by its TTL
    assert world.cached("beta") == {"a1", "a2", "s1", "b1"}


def test_nothing_goes_while_a_job_of_the_project_runs_and_the_sweep_collects_after(world):
    world.job(RUNNING, state=gateway_pb2.JOB_STATE_GENERATING)
    world.job("jobs/eeeeeeeeeeeeeeee", state=gateway_pb2.JOB_STATE_GENERATING, project="beta")
    assert world.delete(A) == Deleted(artifacts=3, cache_entries=0)
    assert world.cached() == set(NAMES)
    released = f"{released_cache_prefix('default')}{A.removeprefix('jobs/')}.txt"
    assert list(world.artifacts.list("cache/released/")) == [released]
    no_ttl = Retention(0, 0)
    assert sweep(world.artifacts, world.jobs, no_ttl, 0) == 0  # still running

    # It ends, having read a2 while it ran: a2 is its now, and stays.
    world.run(RUNNING.removeprefix("jobs/"), ["a2"])
    job = world.jobs.get_job(RUNNING)
    job.state = gateway_pb2.JOB_STATE_CANCELLED
    world.jobs.save_job(job)
    # (beta's job still runs: only beta's releases would wait for it)
    assert sweep(world.artifacts, world.jobs, no_ttl, 0) == 3
    assert world.cached() == {"a2", "s1", "s2", "b1", "old"}
    assert list(world.artifacts.list("cache/released/")) == []
    assert world.cached("beta") == {"a1", "a2", "s1", "b1"}


def test_a_job_from_before_manifests_takes_no_entry(world):
    world.job(RUNNING)
    assert world.delete(RUNNING) == Deleted(artifacts=0, cache_entries=0)
    assert world.cached() == set(NAMES)
    assert list(world.artifacts.list("cache/released/")) == []


def test_many_released_keys_are_collected_in_passes_over_parts_of_the_key_space(
        world, monkeypatch):
    monkeypatch.setattr(cache_release, "CHUNK", 2)  # 7 keys: 16 passes, one per first digit
    assert world.delete(A).cache_entries == 4
    assert world.cached() == {"s1", "s2", "b1", "old"}


def test_a_release_older_than_the_cache_ttl_is_dropped(tmp_path):
    w = World(LocalStore(tmp_path / "store"), tmp_path)
    w.job(A)
    w.job(RUNNING, state=gateway_pb2.JOB_STATE_TRAINING)
    w.run(A.removeprefix("jobs/"), ["a1"])
    w.delete(A)
    (release,) = w.artifacts.list("cache/released/")
    written = w.artifacts.modified(release)
    assert sweep(w.artifacts, w.jobs, Retention(0, 30 * DAY), written + 29 * DAY) == 0
    assert list(w.artifacts.list("cache/released/")) == [release]
    # past the TTL the entries it names have expired too: both go
    assert sweep(w.artifacts, w.jobs, Retention(0, 30 * DAY), written + 31 * DAY) == 2
    assert list(w.artifacts.list("cache/")) == []
