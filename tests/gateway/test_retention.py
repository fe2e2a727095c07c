"""Retention: DeleteDataset over real gRPC removes exactly the upload asked for and refuses one
an unfinished job uses; the TTL sweep (a plain function, given "now") removes the expired
uploads and teacher-cache entries and keeps the fresh ones and the ones a job still uses."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from distill.client import DistillClientError, Distiller
from distill.v1 import gateway_pb2
from services.common import teacher_cache
from services.common.storage.local import LocalStore
from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace
from services.gateway.job_store import JobStore
from services.gateway.retention import DAY, Retention, sweep
from services.gateway.server import build
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.ports import held_port
from tests.fixtures.waits import wait_for
from tests.gateway.test_service import GOOD, spec, stageless, upload


def stored_keys(store: LocalStore) -> set[str]:
    return set(store.list(""))


def test_delete_dataset_removes_only_that_upload(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    with held_port() as port:  # the job waits at the generator's door: it never ends by itself
        settings = stageless(tmp_path, port, stage_connect_timeout_seconds=600)
        store = LocalStore(tmp_path / "store")
        with serve_in_thread(settings, lambda: build(settings)) as address, \
                Distiller(address) as client:
            used = upload(client, tmp_path, GOOD)
            alone = upload(client, tmp_path, GOOD + GOOD, name="other.jsonl")
            job = client.distill(spec(used))
            wait_for(lambda: client.get(job.name).outputs.held_out.uri, "the job's split")
            before = stored_keys(store)

            assert client.delete_dataset(alone.uri) == 1
            assert stored_keys(store) == before - {store.key_from_uri(alone.uri)}

            with pytest.raises(DistillClientError) as raised:
                client.delete_dataset(used.uri)
            assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert job.name in raised.value.message
            with pytest.raises(DistillClientError) as raised:
                client.delete_dataset(alone.uri)
            assert raised.value.code == grpc.StatusCode.NOT_FOUND
            split = client.get(job.name).outputs.held_out.uri
            with pytest.raises(DistillClientError) as raised:
                client.delete_dataset(split)
            assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT

            client.cancel(job.name)  # ended: its own jobs/{id}/ copies stay, the upload may go
            assert client.delete_dataset(used.uri) == 1
            assert stored_keys(store) == before - {store.key_from_uri(u)
                                                   for u in (alone.uri, used.uri)}
            assert store.exists(store.key_from_uri(split))


def test_sweep_removes_what_expired_and_keeps_the_rest(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    jobs = JobStore(tmp_path / "jobs.db")
    now = 1_900_000_000.0
    written = {  # key -> days ago
        "datasets/old.jsonl": 10, "datasets/fresh.jsonl": 1, "datasets/used.jsonl": 10,
        f"{teacher_cache.PREFIX}old.json": 40, f"{teacher_cache.PREFIX}fresh.json": 5,
        "jobs/j1/curated.jsonl": 400, "models/base/x.gguf": 400,
    }
    for key in written:
        store.put_bytes(key, b"{}\n")
    monkeypatch.setattr(store, "modified", lambda key: now - written[key] * DAY)
    running = gateway_pb2.Job(name="jobs/j1", state=gateway_pb2.JOB_STATE_TRAINING)
    running.spec.dataset.uri = store.uri("datasets/used.jsonl")
    running.create_time.FromSeconds(int(now))
    jobs.create_job(running)

    assert sweep(store, jobs, Retention(0, 0), now) == 0  # 0: kept forever
    assert stored_keys(store) == set(written)
    assert sweep(store, jobs, Retention(7 * DAY, 30 * DAY), now) == 2
    assert stored_keys(store) == set(written) - {"datasets/old.jsonl",
                                                 f"{teacher_cache.PREFIX}old.json"}
    running.state = gateway_pb2.JOB_STATE_SUCCEEDED  # ended: its upload expires like any
    jobs.save_job(running)
    assert sweep(store, jobs, Retention(7 * DAY, 30 * DAY), now) == 1
    assert not store.exists("datasets/used.jsonl")
    jobs.close()


def test_the_sweep_also_deletes_the_routers_traces_past_their_days(tmp_path):
    artifacts = LocalStore(tmp_path / "store")
    jobs = JobStore(tmp_path / "g.db")
    now = 1_764_720_000.0
    recorder = TraceRecorder(artifacts)
    for age in (0, 3, 40):
        recorder.record(Trace(project="default", served_by=ServedBy("bot", 1, "teacher", "m"),
                              messages=(("user", f"{age}"),), answer="a",
                              created_at=now - age * DAY))
    asyncio.run(recorder.flush())
    assert sweep(artifacts, jobs, Retention(0, 0, trace_days=30), now) == 1  # the 40-day-old one
    assert len(list(artifacts.list("traces/"))) == 2
    assert sweep(artifacts, jobs, Retention(0, 0, trace_days=0), now + 90 * DAY) == 0
