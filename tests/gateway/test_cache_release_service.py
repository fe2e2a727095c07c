"""DeleteJob and the teacher cache, the whole path: the gateway, a real generator and judge over
gRPC on loopback, the real S3 server, the fake teacher. Two jobs share some prompts; deleting
one takes the entries only it used, the shared ones serve a rerun of the other with no teacher
call, and the last job to go takes the rest. Another project's entries are never touched."""

from __future__ import annotations

import json
import secrets
from contextlib import ExitStack

import pytest

from distill.client import Distiller
from distill.v1 import common_pb2, gateway_pb2
from services.common.specs.layout import teacher_cache_prefix
from services.common.storage import open_store
from services.gateway.server import build as build_gateway
from services.gateway.settings import GatewaySettings
from services.generator.server import build as build_generator
from services.generator.settings import GeneratorSettings
from services.judge.server import build as build_judge
from services.judge.settings import JudgeSettings
from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.ports import held_port
from tests.fixtures.s3_server import s3_server  # noqa: F401 - the pytest fixture

KEY_ENV = "CACHE_RELEASE_TEACHER_KEY"


def entries(store, project: str = "default") -> set[str]:
    """The keys of the entries in the project's own cache folder."""
    folder = teacher_cache_prefix(project)
    return {k for k in store.list(folder) if "/" not in k.removeprefix(folder)}


@pytest.fixture
def stack(tmp_path, monkeypatch, s3_server):  # noqa: F811 - the fixture above
    """(a gateway client, the store, the fake teacher). The trainer and exporter are nowhere:
    the jobs here end at curation, where a judge that keeps nothing fails them."""
    monkeypatch.setenv(KEY_ENV, "sk-cache-release-" + secrets.token_hex(4))
    store_url = f"s3://release-{secrets.token_hex(4)}"
    s3 = {"store_url": store_url, "s3_endpoint": s3_server.endpoint,
          "s3_access_key": s3_server.access_key, "s3_secret_key": s3_server.secret_key,
          "port": 0, "grace_seconds": 0}
    with ExitStack() as stack, run_fake_provider() as fake:
        providers = fake.providers(KEY_ENV)
        generator = GeneratorSettings(**s3, providers=providers, cache_dir=tmp_path / "gen",
                                      progress_interval_seconds=0)
        judge = JudgeSettings(**s3, providers=providers, cache_dir=tmp_path / "judge")
        nowhere = f"127.0.0.1:{stack.enter_context(held_port())}"
        gateway = GatewaySettings(
            **s3, providers=providers, db_path=tmp_path / "gateway.db",
            generator_address=stack.enter_context(
                serve_in_thread(generator, lambda: build_generator(generator))),
            judge_address=stack.enter_context(serve_in_thread(judge, lambda: build_judge(judge))),
            trainer_address=nowhere, exporter_address=nowhere)
        address = stack.enter_context(serve_in_thread(gateway, lambda: build_gateway(gateway)))
        client = stack.enter_context(Distiller(address))
        yield client, open_store(store_url, **s3_server.store_settings()), fake


def run_job(client: Distiller, tmp_path, fake, numbers: range) -> gateway_pb2.Job:
    """A job on the prompts "What is i + 1?" for i in `numbers`, 2 samples each, until it ends
    (failed: the judge keeps no answer of the fake teacher)."""
    path = tmp_path / f"data-{numbers.start}-{numbers.stop}.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "response": "positive"})
                            + "\n" for i in numbers))
    teacher = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                   base_url=fake.openai_base_url, api_key_env=KEY_ENV,
                                   max_tokens=8)
    judge = common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
        mode=common_pb2.MATCH_MODE_LABEL))
    spec = client.spec(dataset=client.upload(path), student="smollm2-135m", teacher=teacher,
                       judge=judge, n_samples=2, top_k=1, min_score=5,
                       **{"eval": {"holdout_fraction": 0}})
    job = client.wait(client.distill(spec).name, timeout=300)
    assert job.state == gateway_pb2.JOB_STATE_FAILED and "kept no prompt" in job.error.message, \
        job.error
    return job


def test_deleting_jobs_takes_the_cache_entries_only_they_used(stack, tmp_path):
    client, store, fake = stack
    first = run_job(client, tmp_path, fake, range(0, 5))
    second = run_job(client, tmp_path, fake, range(3, 8))  # 3 and 4 in common
    assert fake.stats()["completed_samples"] == 16
    assert len(entries(store)) == 16
    # Another project's entries, under the very same keys.
    theirs = {k.replace(teacher_cache_prefix("default"), teacher_cache_prefix("beta"), 1)
              for k in entries(store)}
    for key in theirs:
        store.put_bytes(key, b"{}")

    before = entries(store)
    deleted = client.delete(first.name)
    assert deleted.cache_entries_deleted == 6  # prompts 0-2, two samples each
    assert deleted.artifacts_deleted >= 3  # at least candidates, curated set, the manifest
    left = entries(store)
    assert len(left) == 10 and left < before

    # the shared entries serve a rerun of the second job: not one teacher call
    calls = fake.stats()["received"]
    rerun = run_job(client, tmp_path, fake, range(3, 8))
    assert fake.stats()["received"] == calls
    assert rerun.teacher_usage.cached_requests == rerun.teacher_usage.requests == 10
    assert entries(store) == left

    assert client.delete(second.name).cache_entries_deleted == 0  # the rerun uses them all
    assert entries(store) == left
    assert client.delete(rerun.name).cache_entries_deleted == 10
    assert entries(store) == set()
    assert entries(store, "beta") == theirs
    assert list(store.list("cache/released/")) == []
