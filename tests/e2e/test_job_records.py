"""`distill logs`, `distill metrics` and `distill delete` through the real CLI against the whole
suite: the event log of a real job, its training curve as data, and its deletion."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys

import grpc
import pytest

from distill.client import DistillClientError
from distill.v1 import gateway_pb2
from tests.e2e.conftest import write_dataset
from tests.e2e.test_pipeline import spec
from tests.fixtures.processes import REPO

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  (state|progress|retry|warning|error) +"
                      r"(\w+) +(.+)$")


def cli(suite, *args: str) -> list[str]:
    return [sys.executable, "-m", "distill.cli", "--gateway", suite.suite.address("gateway"),
            *args]


def run_cli(suite, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(suite, *args), cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.slow
def test_logs_follow_a_job_then_metrics_and_delete_it(suite, tmp_path, tiny_llama_dir):
    suite.fake.configure(replies=["positive", "negative", "Positive!", "meh"])
    # A tiny random student trains in seconds; its export may then fail the smoke test. Either
    # way the job ends, and its log must say how.
    s = spec(suite, write_dataset(tmp_path / "d.jsonl", 4), tiny_llama_dir, steps=2)
    job = suite.client.distill(s)
    follow = subprocess.Popen(cli(suite, "logs", job.name, "--follow"), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        refused = run_cli(suite, "delete", job.name)  # the job has only just started
        followed, errors = follow.communicate(timeout=500)  # ends with the job, by itself
    finally:
        follow.kill()
    assert refused.returncode == 2
    assert "FAILED_PRECONDITION" in refused.stderr and "cancel it first" in refused.stderr
    assert follow.returncode == 0, errors
    final = suite.client.get(job.name)
    assert final.state in (gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JOB_STATE_FAILED)

    lines = followed.splitlines()
    parsed = [LOG_LINE.match(line) for line in lines]
    assert all(parsed), lines
    states = [m.group(3) for m in parsed if m.group(1) == "state"]
    ended = gateway_pb2.JobState.Name(final.state).removeprefix("JOB_STATE_").lower()
    assert states[0] == "pending" and states[-1] == ended
    assert [s for s in ("generating", "training", "exporting") if s in states] == [
        "generating", "training", "exporting"], states
    assert any(m.group(1) == "progress" and m.group(2) == "exporting" for m in parsed)
    if final.error.message:
        assert parsed[-1].group(1) == "error" and final.error.message in lines[-1]
    # Following saw every event: the same log, read afterwards, page by page.
    assert run_cli(suite, "logs", job.name).stdout == followed
    events = list(suite.client.logs(job.name, page_size=2))
    assert len(events) == len(lines)
    assert all(a.time.ToNanoseconds() <= b.time.ToNanoseconds()
               for a, b in itertools.pairwise(events))

    as_json = run_cli(suite, "metrics", job.name, "--json")
    assert as_json.returncode == 0, as_json.stderr
    curve = json.loads(as_json.stdout)["training"]
    assert [int(row["step"]) for row in curve] == sorted(int(row["step"]) for row in curve)
    assert curve and all(row["loss"] > 0 for row in curve)
    typed = suite.client.metrics(job.name)
    assert isinstance(typed.training[0], gateway_pb2.TrainingStep)
    assert typed.training[-1].loss == pytest.approx(curve[-1]["loss"])
    assert not typed.HasField("evaluation")  # this job held nothing out
    table = run_cli(suite, "metrics", job.name)
    assert table.returncode == 0 and "training curve" in table.stdout
    assert "evaluation: none yet" in table.stdout

    deleted = run_cli(suite, "delete", job.name)
    assert deleted.returncode == 0, deleted.stderr
    count = int(re.search(r"its (\d+) stored artifacts", deleted.stdout).group(1))
    assert count >= 4  # at least candidates, curated set, a checkpoint and the adapter
    gone = run_cli(suite, "get", job.name)
    assert gone.returncode == 2 and "NOT_FOUND" in gone.stderr
    with pytest.raises(DistillClientError) as raised:
        next(suite.client.read_jsonl(final.outputs.curated.uri))
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(DistillClientError) as raised:
        next(suite.client.logs(job.name))
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    # What other jobs may use stays: the uploaded dataset.
    assert suite.client.download(s.dataset.uri, tmp_path / "again.jsonl").read_bytes() == (
        tmp_path / "d.jsonl").read_bytes()


def test_unknown_jobs_and_bad_tokens_are_clear_errors(suite):
    missing = run_cli(suite, "logs", "jobs/0123456789abcdef")
    assert missing.returncode == 2 and "NOT_FOUND" in missing.stderr
    bad = run_cli(suite, "delete", "job-without-prefix")
    assert bad.returncode == 2 and "name: expected 'jobs/{id}'" in bad.stderr
    with pytest.raises(DistillClientError) as raised:
        suite.client._call("ListJobEvents", gateway_pb2.ListJobEventsRequest(
            parent="jobs/0123456789abcdef", page_token="not-a-token"))
    assert raised.value.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
