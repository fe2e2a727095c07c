"""The Node.js client (examples/node) against a real gateway process over gRPC.

Proves the contract is usable from another language with nothing but the .proto files:
UploadDataset (client stream), Estimate, Distill and WatchJob (server stream), the status codes
and messages, and the bearer token. Needs `node` (>= 18) and, on first run, `npm`; missing tools
fail the test with a message rather than skipping it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from distill.local_suite import ServiceProcess, start_service
from distill.v1 import gateway_pb2
from tests.fixtures.ports import held_port
from tests.fixtures.processes import REPO

NODE_DIR = REPO / "examples" / "node"
CLIENT = NODE_DIR / "client.js"
TRAIN = REPO / "examples" / "addition" / "train.jsonl"
TOKEN = "node-e2e-token"
NPM_CI = ["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--ignore-scripts"]


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"`{tool}` is not on PATH: the Node.js client test needs Node.js >= 18 with "
                    f"npm (https://nodejs.org); then run `{' '.join(NPM_CI[:4])}`", pytrace=False)
    return path


def _node_modules_current() -> bool:
    """True when node_modules holds exactly what package-lock.json pins (npm's hidden lockfile)."""
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    if not installed.is_file():
        return False
    wanted = json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]
    wanted.pop("", None)
    return json.loads(installed.read_text()).get("packages") == wanted


@pytest.fixture(scope="module")
def node() -> str:
    node = _require("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(re.match(r"v(\d+)", version.stdout).group(1))
    if major < 18:
        pytest.fail(f"examples/node needs Node.js >= 18, found {version.stdout.strip()}",
                    pytrace=False)
    if not _node_modules_current():
        _require("npm")
        result = subprocess.run(NPM_CI, cwd=REPO, capture_output=True, text=True, timeout=300,
                                check=False)
        if result.returncode != 0:
            pytest.fail(f"`{' '.join(NPM_CI)}` failed:\n{result.stdout}\n{result.stderr}",
                        pytrace=False)
        assert _node_modules_current(), "npm ci left node_modules out of step with the lock"
    return node


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[ServiceProcess]:
    """The gateway alone, with a bearer token; the stage services' ports have nothing behind them,
    so Estimate and UploadDataset work and a started job fails after waiting 1 s for its first
    stage (the connect timeout), spending nothing."""
    home = tmp_path_factory.mktemp("node-gateway")
    env = {
        "DISTILL_STORE_URL": f"file://{home / 'store'}",
        "DISTILL_GATEWAY_DB_PATH": str(home / "gateway.db"),
        "DISTILL_AUTH_TOKEN": TOKEN,
        "OPENAI_API_KEY": "sk-test",
        "PYTHONUNBUFFERED": "1",
        "DISTILL_GATEWAY_STAGE_CONNECT_TIMEOUT_SECONDS": "1",
        "DISTILL_METRICS_PORT": "0",  # not port + 1000: that may be taken in the ephemeral range
    }
    with ExitStack() as stack:
        # held, not listening: connections are refused, and no other process can take them
        env.update({f"DISTILL_GATEWAY_{name}_ADDRESS":
                    f"127.0.0.1:{stack.enter_context(held_port())}"
                    for name in ("GENERATOR", "JUDGE", "TRAINER", "EXPORTER")})
        service = start_service("services.gateway", 0, home / "logs", env, cwd=REPO)
        try:
            service.wait_healthy(timeout=120)
            yield service
        finally:
            service.stop()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_client(node: str, gateway: ServiceProcess, *args: str, token: str | None = TOKEN,
               cwd: Path = REPO, timeout: float = 60) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    if token is not None:
        env["DISTILL_AUTH_TOKEN"] = token
    result = subprocess.run([node, str(CLIENT), "--gateway", gateway.address, *args], cwd=cwd,
                            env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return Run(result.returncode, result.stdout, result.stderr)


def test_uploads_and_estimates_the_addition_dataset(node, gateway, tmp_path):
    # From another folder: the client finds the .proto files relative to itself.
    run = run_client(node, gateway, "--dataset", str(TRAIN), cwd=tmp_path)
    assert run.returncode == 0, run
    assert re.search(r"^uploaded .*train\.jsonl: 40 prompts, file://\S+/datasets/[0-9a-f]{64}"
                     r"\.jsonl", run.stdout, re.M), run
    assert re.search(r"^prompts: 40$", run.stdout, re.M), run
    assert re.search(r"^  teacher +[\d,]+ input tokens +\$[\d.e-]+ - \$[\d.e-]+$",
                     run.stdout, re.M), run
    assert re.search(r"^  teacher +[\d,]+ output tokens ", run.stdout, re.M), run
    assert re.search(r"^  training +\S+ GPU hours ", run.stdout, re.M), run
    low, high = map(float, re.search(r"^total: \$(\S+) - \$(\S+)$", run.stdout, re.M).groups())
    assert 0 < low <= high, run
    assert "assumption: teacher tokens counted with" in run.stdout, run

    again = run_client(node, gateway, "--dataset", str(TRAIN))
    assert again.returncode == 0, again
    assert "already stored" in again.stdout, again  # deduplicated by sha256


def test_a_malformed_line_is_invalid_argument_with_its_line_number(node, gateway, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "What is 1 + 1?", "response": "2"}\n'
                   '{"prompt": "What is 2 + 2?", "response": "4"}\n'
                   '{"prompt": "What is 3 + 3?", "response": \n')
    run = run_client(node, gateway, "--dataset", str(bad))
    assert run.returncode == 1, run
    assert "error: INVALID_ARGUMENT: dataset 'bad.jsonl'" in run.stderr, run
    assert re.search(r"line 3: not valid JSON", run.stderr), run
    assert "has 1 bad line" in run.stderr, run  # lines 1 and 2 are fine
    assert "prompts:" not in run.stdout, run  # nothing estimated on a bad dataset


def test_a_missing_token_is_unauthenticated(node, gateway):
    run = run_client(node, gateway, "--dataset", str(TRAIN), token=None)
    assert run.returncode == 1, run
    assert "error: UNAUTHENTICATED:" in run.stderr, run


def test_an_unknown_job_is_not_found(node, gateway):
    run = run_client(node, gateway, "--watch", "jobs/does-not-exist")
    assert run.returncode == 1, run
    assert "error: NOT_FOUND:" in run.stderr, run


def test_run_watches_the_job_to_failed_and_exits_non_zero(node, gateway):
    # No generator/judge is listening, so the job fails in its first stage: Distill returns the
    # job, WatchJob streams it to FAILED, and the client exits 3 with the job's error.
    run = run_client(node, gateway, "--dataset", str(TRAIN), "--run")
    assert run.returncode == 3, run
    name = re.search(r"^started (jobs/\S+)$", run.stdout, re.M).group(1)
    assert re.search(rf"^\d\d:\d\d:\d\d  {name}  FAILED  cost \$0\.0000", run.stdout, re.M), run
    assert re.search(r"^job error: UNAVAILABLE: generator at 127\.0\.0\.1:\d+, judge at "
                     r"127\.0\.0\.1:\d+: not reachable for 1s", run.stderr, re.M), run
    assert f"{name} ended FAILED" in run.stdout, run

    # Watching a job that has already ended: its terminal snapshot, then the same exit status.
    watched = run_client(node, gateway, "--watch", name)
    assert watched.returncode == 3, watched
    assert f"{name} ended FAILED" in watched.stdout, watched


def test_usage_errors_exit_2(node, gateway):
    run = run_client(node, gateway, "--watch", "not-a-job-name")
    assert run.returncode == 2, run
    assert "--watch: expected jobs/ID" in run.stderr, run


def test_run_on_the_whole_suite_watches_stages_and_exits_4_when_cancelled(node, suite, tmp_path):
    """The five services over S3 with the fake teacher: the client starts a job, prints its
    snapshots as it generates, and ends with exit status 4 once the job is cancelled."""
    from tests.e2e.conftest import TEACHER_KEY_ENV, write_dataset

    suite.fake.configure(latency=0.5, replies=["positive"])
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "teacher": {"provider": "PROVIDER_OPENAI", "model": "gpt-4o-mini",
                    "base_url": suite.fake.openai_base_url, "api_key_env": TEACHER_KEY_ENV,
                    "max_tokens": 8},
        "limits": {"max_concurrency": 2},
        "n_samples": 2,
        "training": {"max_steps": 2, "batch_size": 2, "max_seq_length": 64},
    }))
    dataset = write_dataset(tmp_path / "reviews.jsonl", 30)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    proc = subprocess.Popen(
        [node, str(CLIENT), "--gateway", suite.suite.address("gateway"), "--dataset",
         str(dataset), "--spec", str(spec), "--run"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        name = None
        for line in proc.stdout:
            lines.append(line)
            if match := re.match(r"started (jobs/\S+)", line):
                name = match.group(1)
            # 27: the default evaluation holds 10% of the 30 prompts out of generation.
            if name and re.search(r"  GENERATING  [1-9]\d*/27 prompts", line):
                suite.client.cancel(name)
                break
        assert name, "".join(lines)
        rest, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    stdout = "".join(lines) + rest
    assert proc.returncode == 4, f"{stdout}\n{stderr}\n{suite.logs()}"
    assert "prompts: 30" in stdout
    assert re.search(rf"^\d\d:\d\d:\d\d  {name}  CANCELLED  ", stdout, re.M), stdout
    assert f"{name} ended CANCELLED" in stdout
    assert suite.client.get(name).state == gateway_pb2.JOB_STATE_CANCELLED
