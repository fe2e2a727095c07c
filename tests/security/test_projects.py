"""Projects (tenants): one project's key sees nothing of another's, keys are stored hashed and
managed by the admin key only."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys

import grpc
import pytest

from distill.client import DistillClientError, Distiller
from distill.v1 import (
    common_pb2,
    gateway_pb2,
    generator_pb2,
    generator_pb2_grpc,
    judge_pb2,
    judge_pb2_grpc,
)
from services.common.auth import DEFAULT_PROJECT
from services.common.errors import NotFound
from services.common.server import Service
from services.common.settings import ServiceSettings
from services.common.specs.layout import JobKeys
from services.common.storage import open_store
from services.gateway.aliases import Aliases
from services.gateway.api_keys import ApiKeys
from services.gateway.job_store import JobStore
from services.gateway.lifecycle import Lifecycle
from services.gateway.runner import JobRunner
from services.gateway.server import build
from services.gateway.settings import GatewaySettings
from services.gateway.watch import JobHub
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.ports import held_port
from tests.fixtures.waits import wait_for
from tests.security.conftest import ADMIN

DATA = b"".join(json.dumps({"prompt": f"What is {i} + 1?", "response": str(i + 1)}).encode()
                + b"\n" for i in range(5))


def upload(client: Distiller, tmp, name: str) -> common_pb2.ArtifactRef:
    path = tmp / name
    path.write_bytes(DATA)
    return client.upload(path)


def finished_job(projects, project: str, job_id: str) -> gateway_pb2.Job:
    """A succeeded job of `project` with an artifact in its folder, written as the runner
    would (no stage services needed to read, cancel or delete it)."""
    store = open_store(projects.settings.store_url)
    ref = store.put_bytes(JobKeys(job_id).evaluation, b'{"row": 1}\n')
    store.put_bytes(f"jobs/{job_id}/student.gguf", b"GGUF not really")
    eval_run = store.put_bytes(f"jobs/{job_id}-eval-teacher/candidates/candidates.jsonl", b"{}\n")
    job = gateway_pb2.Job(name=f"jobs/{job_id}", state=gateway_pb2.JOB_STATE_SUCCEEDED,
                          project=project)
    job.outputs.evaluation.CopyFrom(ref.as_proto())
    job.outputs.candidates.CopyFrom(eval_run.as_proto())
    job.outputs.student_gguf.uri = store.uri(f"jobs/{job_id}/gguf/student-Q4_K_M.gguf")
    job.create_time.GetCurrentTime()
    jobs = JobStore(projects.tmp / "gateway.db")
    try:
        jobs.create_job(job)
    finally:
        jobs.close()
    return job


def not_found(call, *args, **kwargs) -> None:
    with pytest.raises(DistillClientError) as raised:
        result = call(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
    assert raised.value.code == grpc.StatusCode.NOT_FOUND, raised.value


def test_another_projects_job_and_artifacts_are_not_found(projects):
    job = finished_job(projects, "alpha", "a1b2c3d4e5f60718")
    alpha, beta = projects.alpha, projects.beta
    # alpha sees its own job: the same calls can succeed, so NOT_FOUND below is the project
    assert alpha.get(job.name).state == gateway_pb2.JOB_STATE_SUCCEEDED
    assert [j.name for j in alpha.list()] == [job.name]
    assert [j.name for j in alpha.watch(job.name)] == [job.name]
    assert alpha.download(job.outputs.evaluation.uri, projects.tmp / "mine.jsonl").exists()
    assert alpha.download(job.outputs.candidates.uri, projects.tmp / "run.jsonl").exists()
    alpha.metrics(job.name)
    list(alpha.logs(job.name))

    assert list(beta.list()) == []
    for call in (beta.get, beta.watch, beta.metrics, beta.cancel, beta.delete, beta.logs):
        not_found(call, job.name)
    not_found(beta.download_report, job.name, projects.tmp / "report")
    for uri in (job.outputs.evaluation.uri, job.outputs.candidates.uri):
        not_found(beta.download, uri, projects.tmp / "theirs.jsonl")
    # nor use alpha's trained student as its local teacher
    student = job.outputs.evaluation.uri.replace("evaluation.jsonl", "student.gguf")
    theirs = beta.spec(dataset=upload(beta, projects.tmp, "b.jsonl"), student="smollm2-135m",
                       teacher=common_pb2.ModelSpec(provider=common_pb2.PROVIDER_LOCAL,
                                                    model=student))
    not_found(beta.estimate, theirs)
    not_found(beta.distill, theirs)
    # not even as one member of a committee
    committee = beta.spec(dataset=theirs.dataset, student="smollm2-135m", committee=[
        {"teacher": {"model": "gpt-4o-mini"}, "n_samples": 1},
        {"teacher": {"provider": "PROVIDER_LOCAL", "model": student}, "n_samples": 1}])
    not_found(beta.distill, committee)
    assert not (projects.tmp / "theirs.jsonl").exists()
    # beta's cancel and delete changed nothing
    assert alpha.get(job.name).state == gateway_pb2.JOB_STATE_SUCCEEDED
    assert alpha.download(job.outputs.evaluation.uri, projects.tmp / "again.jsonl").exists()


def test_another_projects_dataset_is_not_found(projects):
    alpha, beta = projects.alpha, projects.beta
    dataset = upload(alpha, projects.tmp, "alpha.jsonl")
    assert "/alpha/" in dataset.uri
    not_found(beta.download, dataset.uri, projects.tmp / "theirs.jsonl")
    spec = alpha.spec(dataset=dataset, teacher="gpt-4o-mini", student="smollm2-135m",
                      budget_usd=1e-9)
    assert alpha.estimate(spec).prompts == 5
    not_found(beta.estimate, spec)
    not_found(beta.distill, spec)
    assert list(beta.list()) == []
    # the same bytes uploaded by beta are beta's own copy
    theirs = upload(beta, projects.tmp, "beta.jsonl")
    assert theirs.uri != dataset.uri and theirs.sha256 == dataset.sha256
    assert beta.estimate(beta.spec(dataset=theirs, teacher="gpt-4o-mini",
                                   student="smollm2-135m", budget_usd=1e-9)).prompts == 5


def test_another_projects_dataset_cannot_be_deleted(projects):
    """DeleteDataset acts on the caller's project's uploads only: another's is NOT_FOUND (and
    stays), the owner's own goes."""
    alpha, beta = projects.alpha, projects.beta
    dataset = upload(alpha, projects.tmp, "alpha.jsonl")
    not_found(beta.delete_dataset, dataset.uri)
    assert len(list(alpha.read_jsonl(dataset.uri))) == 5  # still there
    assert alpha.delete_dataset(dataset.uri) == 1
    not_found(alpha.delete_dataset, dataset.uri)


def test_aliases_are_per_project(projects):
    alpha, beta = projects.alpha, projects.beta
    job = finished_job(projects, "alpha", "0f1e2d3c4b5a6978")
    alpha.set_alias("bot", teacher="gpt-4o", expected_version=0)
    alpha.set_alias("bot", job=job.name, expected_version=1)
    not_found(beta.get_alias, "bot")
    not_found(beta.rollback_alias, "bot", 1, 2)
    # beta cannot point any alias at alpha's job
    not_found(beta.set_alias, "bot", job=job.name, expected_version=0)
    not_found(beta.set_alias, "mine", job=job.name, expected_version=0)
    # nor at alpha's GGUF through one of its own jobs
    own = finished_job(projects, "beta", "1f1e2d3c4b5a6978")
    with pytest.raises(DistillClientError) as raised:
        beta.set_alias("mine", job=own.name, gguf=job.outputs.student_gguf.uri,
                       expected_version=0)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "target.gguf" in raised.value.message
    # another quantization beside its own student GGUF is fine
    q8 = own.outputs.student_gguf.uri.replace("Q4_K_M", "Q8_0")
    assert beta.set_alias("mine", job=own.name, gguf=q8, expected_version=0).target.gguf.uri == q8
    # beta's own alias of the same name is another alias; alpha's stays as it was
    assert beta.set_alias("bot", teacher="gpt-4o-mini", expected_version=0).version == 1
    assert [a.name for a in beta.list_aliases()] == ["bot", "mine"]
    ours = alpha.get_alias("bot")
    assert ours.version == 2 and ours.target.job == job.name
    assert [a.name for a in alpha.list_aliases()] == ["bot"]
    assert alpha.rollback_alias("bot", 1, 2).target.teacher.model == "gpt-4o"
    assert beta.get_alias("bot").target.teacher.model == "gpt-4o-mini"


def test_a_revoked_or_unknown_key_is_unauthenticated(projects):
    keys = {k.project: k for k in projects.admin.list_api_keys()}
    assert set(keys) == {"alpha", "beta"} and keys["alpha"].description == "alpha's CI"
    assert projects.alpha.list_aliases() is not None and list(projects.alpha.list()) == []
    revoked = projects.admin.revoke_api_key(keys["alpha"].name)
    assert revoked.HasField("revoke_time")
    for client in (projects.alpha, Distiller(projects.address, token="dk_not-a-key"),
                   Distiller(projects.address)):
        with pytest.raises(DistillClientError) as raised:
            list(client.list())
        assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert list(projects.beta.list()) == []  # beta's key still works
    assert projects.admin.list_api_keys("alpha")[0].HasField("revoke_time")


def test_keys_are_stored_hashed(projects):
    key = projects.alpha_key
    stored = b"".join(p.read_bytes() for p in projects.tmp.glob("gateway.db*"))
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored
    assert key.encode() not in stored
    assert key.removeprefix("dk_").encode() not in stored


def test_admin_rpcs_refuse_a_project_key(projects):
    for call, args in ((projects.beta.create_api_key, ("beta",)),
                       (projects.beta.list_api_keys, ()),
                       (projects.beta.revoke_api_key, (projects.admin.list_api_keys()[0].name,))):
        with pytest.raises(DistillClientError) as raised:
            call(*args)
        assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert not any(k.HasField("revoke_time") for k in projects.admin.list_api_keys())
    assert len(projects.admin.list_api_keys()) == 2


def test_bad_key_requests_name_the_field(projects):
    for project in ("", "Alpha", "a/b", "x" * 41):
        with pytest.raises(DistillClientError) as raised:
            projects.admin.create_api_key(project)
        assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "project" in raised.value.message
    with pytest.raises(DistillClientError) as raised:
        projects.admin.create_api_key("gamma", "d" * 201)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "description" in raised.value.message
    with pytest.raises(DistillClientError) as raised:
        projects.admin.revoke_api_key("apiKeys/nope")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert len(projects.admin.list_api_keys()) == 2  # nothing half-created


def test_cli_keys_create_list_revoke(projects):
    def cli(*args: str, token: str = ADMIN) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "distill.cli", "--gateway",
                               projects.address, "keys", *args], capture_output=True, text=True,
                              env={"DISTILL_ADMIN_TOKEN": token, "PATH": "/usr/bin:/bin"},
                              timeout=120, check=False)

    created = cli("create", "gamma", "--description", "a notebook")
    assert created.returncode == 0, created.stderr
    name, key = created.stdout.split()[0], created.stdout.split()[-1]
    assert name.startswith("apiKeys/") and key.startswith("dk_")
    assert "shown this once" in created.stderr
    with Distiller(projects.address, token=key) as gamma:
        assert list(gamma.list()) == []
    listed = cli("list", "--project", "gamma")
    assert listed.returncode == 0 and name in listed.stdout and "a notebook" in listed.stdout
    assert key not in listed.stdout
    assert cli("revoke", name).returncode == 0
    with Distiller(projects.address, token=key) as gamma, pytest.raises(DistillClientError) as r:
        list(gamma.list())
    assert r.value.code == grpc.StatusCode.UNAUTHENTICATED
    refused = cli("list", token=projects.alpha_key)
    assert refused.returncode != 0 and "PERMISSION_DENIED" in refused.stderr


def test_a_database_from_before_projects_is_migrated(tmp_path):
    """Jobs and aliases of an existing install become the default project's."""
    path = tmp_path / "gateway.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE jobs (id TEXT PRIMARY KEY, request_id TEXT UNIQUE, state INTEGER NOT NULL,
                           create_time REAL NOT NULL, job BLOB NOT NULL);
        CREATE TABLE alias_versions (name TEXT NOT NULL, version INTEGER NOT NULL,
                                     target BLOB NOT NULL, create_time REAL NOT NULL,
                                     PRIMARY KEY (name, version));
    """)
    job = gateway_pb2.Job(name="jobs/old1", state=gateway_pb2.JOB_STATE_SUCCEEDED)
    target = gateway_pb2.AliasTarget(job="jobs/old1")
    old.execute("INSERT INTO jobs VALUES ('old1', NULL, ?, 1.0, ?)",
                (job.state, job.SerializeToString()))
    old.execute("INSERT INTO alias_versions VALUES ('bot', 1, ?, 1.0)",
                (target.SerializeToString(),))
    old.commit()
    old.close()
    store = JobStore(path)
    try:
        assert store.get_job("jobs/old1", DEFAULT_PROJECT).project == DEFAULT_PROJECT
        with pytest.raises(NotFound):
            store.get_job("jobs/old1", "alpha")
        assert [j.name for j in store.list_jobs()[0]] == ["jobs/old1"]
        assert store.get_alias("bot").target.job == "jobs/old1"
        assert store.set_alias("bot", target, 0, "alpha").version == 1  # alpha's own "bot"
        assert store.get_alias("bot").version == 1
    finally:
        store.close()
    JobStore(path).close()  # opening a migrated database again changes nothing


class _RecordingGenerator(generator_pb2_grpc.GeneratorServiceServicer):
    """Records each GenerateRequest, then holds the stream open until the gateway cancels it."""

    def __init__(self) -> None:
        self.requests: list[generator_pb2.GenerateRequest] = []

    async def Generate(self, request, context):  # noqa: N802 - gRPC method name
        self.requests.append(request)
        await asyncio.Event().wait()
        yield generator_pb2.GenerateResponse()  # never reached: an async generator all the same


class _WaitingJudge(judge_pb2_grpc.JudgeServiceServicer):
    async def Judge(self, request_iterator, context):  # noqa: N802 - gRPC method name
        await asyncio.Event().wait()
        yield judge_pb2.JudgeResponse()  # never reached


def test_a_job_belongs_to_the_project_that_started_it(tmp_path, monkeypatch):
    """Distill through the gateway: the job is alpha's, the generator is told so (its teacher
    cache is alpha's), and beta can neither see nor cancel it."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    recorder = _RecordingGenerator()
    with held_port() as port, serve_in_thread(
            ServiceSettings(port=0, grace_seconds=0),
            [Service.of(generator_pb2, generator_pb2_grpc, recorder),
             Service.of(judge_pb2, judge_pb2_grpc, _WaitingJudge())]) as generator:
        nowhere = f"127.0.0.1:{port}"
        settings = GatewaySettings(port=0, grace_seconds=0, admin_token=ADMIN,
                                   store_url=f"file://{tmp_path / 'store'}",
                                   db_path=tmp_path / "gateway.db", generator_address=generator,
                                   judge_address=generator, trainer_address=nowhere,
                                   exporter_address=nowhere)
        with serve_in_thread(settings, lambda: build(settings)) as address, \
                Distiller(address, token=ADMIN) as admin, \
                Distiller(address, token=admin.create_api_key("alpha").key) as alpha, \
                Distiller(address, token=admin.create_api_key("beta").key) as beta:
            spec = alpha.spec(dataset=upload(alpha, tmp_path, "a.jsonl"), teacher="gpt-4o-mini",
                              student="smollm2-135m")
            job = alpha.distill(spec)
            assert job.project == "alpha"
            wait_for(lambda: recorder.requests, "the job's GenerateRequest")
            assert recorder.requests[0].project == "alpha"
            assert [j.name for j in alpha.list()] == [job.name] and list(beta.list()) == []
            assert list(admin.list()) == []  # the admin key acts in the default project
            not_found(beta.cancel, job.name)
            assert alpha.get(job.name).state == gateway_pb2.JOB_STATE_GENERATING
            assert alpha.cancel(job.name).state == gateway_pb2.JOB_STATE_CANCELLED


def test_a_job_promotes_only_its_projects_alias(tmp_path):
    """The runner's promotion at the end of a job: alpha's job moves alpha's `bot`, never the
    default project's alias of the same name."""
    store = JobStore(tmp_path / "gateway.db")
    try:
        aliases = Aliases(store)
        aliases.set("bot", gateway_pb2.AliasTarget(teacher=common_pb2.ModelSpec(model="x")), 0)
        runner = JobRunner(Lifecycle(store, JobHub()), None, None, aliases, 1.0)
        job = gateway_pb2.Job(name="jobs/0123456789abcdef", project="alpha",
                              state=gateway_pb2.JOB_STATE_SUCCEEDED,
                              spec=gateway_pb2.DistillSpec(promote_alias="bot"))
        job.outputs.student_gguf.uri = "file:///store/jobs/0123456789abcdef/student.gguf"
        runner._promote(job)
        assert job.promoted_alias_version == 1
        assert store.get_alias("bot", "alpha").target.job == job.name
        assert store.get_alias("bot").target.teacher.model == "x"  # default's, untouched
        assert store.get_alias("bot").version == 1
    finally:
        store.close()


def test_a_one_user_install_has_one_key_and_no_key_management(tmp_path, monkeypatch):
    """Without an admin key, the single token is the default project's, nothing manages keys,
    and keys left in the database from an earlier admin-run gateway are not accepted."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    stored = ApiKeys(tmp_path / "gateway.db")
    try:
        _, leftover = stored.create("alpha")
    finally:
        stored.close()
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 'store'}",
                               db_path=tmp_path / "gateway.db", auth_token="only-token")
    with serve_in_thread(settings, lambda: build(settings)) as address, \
            Distiller(address, token="only-token") as owner:
        dataset = upload(owner, tmp_path, "d.jsonl")
        assert dataset.uri.endswith(f"/datasets/{dataset.sha256}.jsonl")  # the layout as before
        assert list(owner.list()) == []
        with pytest.raises(DistillClientError) as raised:
            owner.create_api_key("beta")
        assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED
        with Distiller(address, token=leftover) as stale, \
                pytest.raises(DistillClientError) as raised:
            list(stale.list())
        assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
