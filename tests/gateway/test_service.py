"""The gateway over real gRPC: uploads, downloads, preflight refusals with no spend, aliases."""

from __future__ import annotations

import json

import grpc
import pytest

from distill.client import DistillClientError, Distiller
from distill.v1 import common_pb2, gateway_pb2
from services.common import datasets
from services.gateway.job_store import JobStore
from services.gateway.server import build
from services.gateway.settings import GatewaySettings
from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.gateway import running_gateway
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.ports import held_port
from tests.fixtures.waits import wait_for

GOOD = b"".join(json.dumps({"prompt": f"What is {i} + 1?", "response": str(i + 1)}).encode()
                + b"\n" for i in range(5))


@pytest.fixture
def gateway(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    # Specs here name the fake provider's URL (no key): its host allowed, loopback too.
    with running_gateway(tmp_path, allowed_base_url_hosts=["127.0.0.1"],
                         allow_loopback_addresses=True) as (client, _):
        yield client, tmp_path


def upload(client, tmp_path, data: bytes, name="data.jsonl"):
    path = tmp_path / name
    path.write_bytes(data)
    return client.upload(path)


def stageless(tmp_path, port: int, **kw) -> GatewaySettings:
    """A gateway whose stages are all on `port`, which nothing serves (`held_port`): a job
    runs its split, then waits at the generator's door (GENERATING) until cancelled."""
    nowhere = f"127.0.0.1:{port}"
    return GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 'store'}",
                           db_path=tmp_path / "gateway.db", generator_address=nowhere,
                           judge_address=nowhere, trainer_address=nowhere,
                           exporter_address=nowhere, **kw)


def spec(dataset, **kw) -> gateway_pb2.DistillSpec:
    s = gateway_pb2.DistillSpec(dataset=dataset, student_model="smollm2-135m",
                                teacher=common_pb2.ModelSpec(model="gpt-4o-mini"), **kw)
    s.judge.judge.reference.mode = common_pb2.MATCH_MODE_LABEL
    return s


def test_upload_is_deduplicated_and_downloads_back(gateway):
    client, tmp = gateway
    first = upload(client, tmp, GOOD)
    again = upload(client, tmp, GOOD, name="copy.jsonl")
    assert first.uri == again.uri and first.uri.endswith(f"datasets/{first.sha256}.jsonl")
    assert first.size_bytes == len(GOOD)
    assert client.download(first.uri, tmp / "back.jsonl").read_bytes() == GOOD
    assert [row["response"] for row in client.read_jsonl(first.uri)] == ["1", "2", "3", "4", "5"]


def test_malformed_jsonl_is_refused_with_line_numbers_and_not_stored(gateway):
    client, tmp = gateway
    bad = GOOD + b'{"prompt": \n' + b'{"nothing": "here"}\n'
    with pytest.raises(DistillClientError) as raised:
        upload(client, tmp, bad)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "line 6" in raised.value.message and "line 7" in raised.value.message
    assert not list((tmp / "store").rglob("*.jsonl"))


def test_download_outside_datasets_and_jobs_is_refused(gateway):
    client, tmp = gateway
    ref = upload(client, tmp, GOOD)
    with pytest.raises(DistillClientError) as raised:
        client.download(ref.uri.replace("datasets/", "cache/teacher/"), tmp / "x")
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("change", "code", "fragment"),
    [
        (lambda s: setattr(s, "student_model", "no-such-model"), grpc.StatusCode.INVALID_ARGUMENT,
         "spec.student_model"),
        (lambda s: s.teacher.CopyFrom(common_pb2.ModelSpec(model="claude-sonnet")),
         grpc.StatusCode.FAILED_PRECONDITION, "ANTHROPIC_API_KEY is not set"),
        (lambda s: setattr(s, "n_samples", 40), grpc.StatusCode.INVALID_ARGUMENT,
         "spec.n_samples"),
        (lambda s: s.training.__setattr__("batch_size", 0), grpc.StatusCode.INVALID_ARGUMENT,
         "training.batch_size"),
        (lambda s: setattr(s, "budget_usd", 1e-9), grpc.StatusCode.RESOURCE_EXHAUSTED,
         "under even the low estimate"),
        (lambda s: s.judge.judge.regex.__setattr__("pattern", "("),
         grpc.StatusCode.INVALID_ARGUMENT, "spec.judge.judge.regex.pattern"),
        (lambda s: s.judge.judge.regex.__setattr__("pattern", r"(\w+) \1"),  # RE2 has no \1
         grpc.StatusCode.INVALID_ARGUMENT, "spec.judge.judge.regex.pattern: invalid regex"),
        (lambda s: setattr(s, "promote_alias", "Not An Alias"), grpc.StatusCode.INVALID_ARGUMENT,
         "aliases are"),
        # 9 MB passes gRPC's 16 MiB message limit; the spec layer's own limit refuses it.
        (lambda s: setattr(s, "system_prompt", "x" * 9_000_000),
         grpc.StatusCode.INVALID_ARGUMENT,
         "spec.system_prompt: 9000000 bytes, over the 262144-byte limit"),
    ],
)
def test_distill_refuses_bad_specs_before_any_spend(gateway, change, code, fragment):
    client, tmp = gateway
    with run_fake_provider() as fake:
        s = spec(upload(client, tmp, GOOD))
        s.teacher.base_url = fake.openai_base_url
        change(s)
        with pytest.raises(DistillClientError) as raised:
            client.distill(s)
        assert fake.stats()["received"] == 0  # no teacher call was made
    assert raised.value.code == code, raised.value.message
    assert fragment in raised.value.message
    assert list(client.list()) == []  # and no job was created


def test_list_jobs_over_large_rows_still_answers(gateway):
    """Seven jobs with 900 kB system prompts: one page of them would pass the 4 MiB a gRPC client
    accepts by default, and ListJobs would fail for everyone. Pages stop at the byte budget."""
    client, tmp = gateway
    store = JobStore(tmp / "gateway.db")  # rows written directly: no spec limit stands in the way
    try:
        for i in range(7):
            job = gateway_pb2.Job(name=f"jobs/big{i}", state=gateway_pb2.JOB_STATE_SUCCEEDED,
                                  spec=gateway_pb2.DistillSpec(system_prompt=str(i) * 900_000))
            job.create_time.FromSeconds(1_700_000_000 + i)
            store.create_job(job)
    finally:
        store.close()
    listed = [job.name for job in client.list()]  # every page, through the default 4 MiB limit
    assert listed == [f"jobs/big{i}" for i in reversed(range(7))]


def test_unknown_job_and_bad_names(gateway):
    client, _ = gateway
    for call in (client.get, client.cancel):
        with pytest.raises(DistillClientError) as raised:
            call("jobs/missing")
        assert raised.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(DistillClientError) as raised:
        client.get("missing")
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_request_id_must_be_a_uuid(gateway):
    client, tmp = gateway
    with pytest.raises(DistillClientError) as raised:
        client.distill(spec(upload(client, tmp, GOOD)), request_id="not-a-uuid")
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_alias_rpcs(gateway):
    client, _ = gateway
    alias = client.set_alias("support", teacher="gpt-4o", expected_version=0)
    assert alias.version == 1
    with pytest.raises(DistillClientError) as raised:
        client.set_alias("support", teacher="gpt-4o-mini", expected_version=0)
    assert raised.value.code == grpc.StatusCode.ABORTED
    client.set_alias("support", teacher="gpt-4o-mini", expected_version=1)
    back = client.rollback_alias("support")
    assert (back.version, back.target.teacher.model) == (3, "gpt-4o")
    assert [a.name for a in client.list_aliases()] == ["support"]
    with pytest.raises(DistillClientError) as raised:
        client.get_alias("nope")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_estimate_over_grpc(gateway):
    client, tmp = gateway
    result = client.estimate(spec(upload(client, tmp, GOOD), budget_usd=1e-9))
    assert result.prompts == 5 and result.total_usd_high > 0
    assert any("exceeds budget_usd" in w or "budget_usd" in w for w in result.warnings)


def test_a_job_parses_its_dataset_once(tmp_path, monkeypatch):
    """Preflight reads and checks the dataset; the held-out split and the smoke prompt reuse
    that parse (its compact `Prompts`: each read builds a Prompt from its line, but the file is
    read and scanned once). The stages are on a held port nothing serves: the job waits at the
    generator's door."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    scans = []  # every scan of a whole file's lines, whoever imported which function
    spans = datasets._spans

    def counted(data):
        scans.append(len(data))
        return spans(data)

    with held_port() as port:
        settings = stageless(tmp_path, port)
        with serve_in_thread(settings, lambda: build(settings)) as address, \
                Distiller(address) as client:
            dataset = upload(client, tmp_path, GOOD)
            monkeypatch.setattr(datasets, "_spans", counted)
            job = client.distill(spec(dataset))
            wait_for(lambda: client.get(job.name).outputs.held_out.uri, "the held-out split")
            assert client.get(job.name).state == gateway_pb2.JOB_STATE_GENERATING
            assert scans == [len(GOOD)]  # the file, once
            assert client.cancel(job.name).state == gateway_pb2.JOB_STATE_CANCELLED


def test_a_job_whose_dataset_load_crashed_the_gateway_fails_once(tmp_path, monkeypatch):
    """A job left showing "loading the dataset" stopped the last gateway while it loaded (out of
    memory): the next gateway fails it with the reason instead of loading it again; a job that
    was elsewhere is resumed (and loads its dataset, then waits at the generator's door)."""
    from services.gateway.runner import LOADING_DATASET

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    with held_port() as port:
        settings = stageless(tmp_path, port)
        dataset = settings.open_store().put_bytes("datasets/d.jsonl", GOOD).as_proto()
        jobs = JobStore(tmp_path / "gateway.db")
        for name, message in (("jobs/crashed", LOADING_DATASET), ("jobs/stopped", "queued")):
            job = gateway_pb2.Job(name=name, state=gateway_pb2.JOB_STATE_PENDING,
                                  spec=spec(dataset))
            job.progress.message = message
            job.create_time.GetCurrentTime()
            jobs.create_job(job)
        jobs.close()
        with serve_in_thread(settings, lambda: build(settings)) as address, \
                Distiller(address) as client:
            wait_for(lambda: client.get("jobs/crashed").state == gateway_pb2.JOB_STATE_FAILED,
                     "the crashed job failed")
            failed = client.get("jobs/crashed")
            assert failed.error.code == "RESOURCE_EXHAUSTED"
            assert "stopped while loading this job's dataset" in failed.error.message
            assert not failed.outputs.HasField("held_out")  # nothing loaded, nothing split
            wait_for(lambda: client.get("jobs/stopped").outputs.held_out.uri, "the other resumed")
            client.cancel("jobs/stopped")
