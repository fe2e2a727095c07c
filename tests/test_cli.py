"""The `distill` command line against real processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

from distill.local_suite import check_health
from tests.fixtures.ports import held_port
from tests.fixtures.processes import REPO, start_module
from tests.fixtures.waits import wait_for


def test_up_starts_the_whole_suite_healthy_and_ctrl_c_stops_it(tmp_path):
    # gRPC ports and their metrics ports (+1000) below the kernel's ephemeral range
    # (32768+), where outgoing connections and free ports come from.
    base = random.randrange(20000, 31000, 10)
    addresses = [f"127.0.0.1:{base + i}" for i in range(6)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "distill.cli", "--home", str(tmp_path), "--base-port", str(base),
         "up"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def all_serving() -> bool:
            assert proc.poll() is None, proc.stderr.read()
            return all(check_health(a, timeout=2) == "SERVING" for a in addresses)

        wait_for(all_serving, "all six services SERVING", interval=0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert stderr.count("SERVING") == 6
    assert len(list((tmp_path / "logs").glob("*.log"))) == 6
    assert all(check_health(a, timeout=0.5) == "UNREACHABLE" for a in addresses)


def test_unknown_command_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "distill.cli", "frobnicate"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_user_mistake_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "distill.cli", "--gateway", "127.0.0.1:9", "get", "jobs/x"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr and "Traceback" not in result.stderr


def test_estimate_needs_no_api_key_and_lists_what_run_would_refuse(tmp_path, monkeypatch):
    """Issue 24: on a machine without OPENAI_API_KEY, `estimate` prices the job and warns
    (each warning naming the fix); `run` still refuses."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    dataset = tmp_path / "reviews.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": f"Review {i}: loved it. Sentiment?",
                                           "response": "positive"}) + "\n" for i in range(20)))
    spec = tmp_path / "spec.json"  # a task whose usual smallest student is 1B
    spec.write_text(json.dumps({"task_type": "TASK_TYPE_JSON_EXTRACTION"}))
    env = {
        "DISTILL_STORE_URL": f"file://{tmp_path / 'store'}",
        "DISTILL_GATEWAY_DB_PATH": str(tmp_path / "gateway.db"),
        "DISTILL_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf"),  # an empty model cache: the student is not here
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
    }

    def cli(command: str, address: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "distill.cli", "--gateway", address, command,
             "--spec", str(spec), "--dataset", str(dataset), "--teacher", "gpt-4o",
             "--student", "qwen3-0.6b", *(["--detach"] if command == "run" else [])],
            cwd=REPO, env={**os.environ, **env, "COLUMNS": "1000"}, capture_output=True,
            text=True, timeout=120, check=False)

    with held_port() as trainer_port:
        # nothing listens there: Distill finds no trainer and refuses on its own checks
        env["DISTILL_GATEWAY_TRAINER_ADDRESS"] = f"127.0.0.1:{trainer_port}"
        gateway = start_module("services.gateway", tmp_path / "logs", env)
        try:
            estimate = cli("estimate", gateway.address)
            run = cli("run", gateway.address)
        finally:
            gateway.stop()
    assert estimate.returncode == 0, estimate.stderr
    total = next(line for line in estimate.stdout.splitlines() if "│ total" in line)
    assert float(total.strip("│ ").split()[-1]) > 0  # priced: gpt-4o has a known price
    warnings = [line for line in estimate.stdout.splitlines() if line.startswith("warning:")]
    refusals = [w for w in warnings if "Distill would refuse this job" in w]
    assert any("spec.teacher.api_key_env" in w and "set OPENAI_API_KEY in the gateway's "
               "environment" in w for w in refusals), warnings
    # the default LLM judge (gpt-4o-mini) needs the key too
    assert any("spec.judge.judge.llm.model.api_key_env" in w for w in refusals), warnings
    assert any("spec.student_model" in w and "qwen3-0.6b" in w
               and "local Hugging Face model folder" in w for w in refusals), warnings
    assert any("under the usual floor for json_extraction" in w for w in warnings), warnings
    assert run.returncode == 2  # a refused request (see distill.cli.main)
    assert "FAILED_PRECONDITION" in run.stderr and "OPENAI_API_KEY" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_datasets_delete(tmp_path):
    """`distill datasets delete URI` deletes the upload; a second time it is NOT_FOUND, one
    line without a traceback."""
    from distill.client import Distiller
    from services.gateway.server import build
    from services.gateway.settings import GatewaySettings
    from tests.fixtures.inprocess import serve_in_thread

    settings = GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 'store'}",
                               db_path=tmp_path / "gateway.db")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "hi"}) + "\n")
    with serve_in_thread(settings, lambda: build(settings)) as address:
        with Distiller(address) as client:
            uri = client.upload(data).uri

        def cli() -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "distill.cli", "--gateway", address, "datasets",
                 "delete", uri], cwd=REPO, env={**os.environ, "COLUMNS": "1000"},
                capture_output=True, text=True, timeout=120, check=False)

        first, again = cli(), cli()
    assert first.returncode == 0 and f"deleted {uri}" in first.stdout, first.stderr
    assert not list((tmp_path / "store" / "datasets").glob("*.jsonl"))
    assert again.returncode == 2 and "NOT_FOUND" in again.stderr  # 2: the request's fault
    assert "Traceback" not in again.stderr


# Runs `python ARGS...` with SIGINT ignored, as a non-interactive shell starts a background job.
IGNORING_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                   "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def test_alias_watch_prints_the_aliases_then_each_change(tmp_path):
    from distill.client import Distiller

    env = {"DISTILL_STORE_URL": f"file://{tmp_path / 'store'}",
           "DISTILL_GATEWAY_DB_PATH": str(tmp_path / "gateway.db")}
    gateway = start_module("services.gateway", tmp_path / "logs", env)
    watch = None
    try:
        with Distiller(gateway.address) as client:
            client.set_alias("support", teacher="gpt-4o", expected_version=0)
            log = tmp_path / "watch.out"
            with open(log, "wb") as sink:
                # Started as a script's background job is (SIGINT ignored, which exec keeps),
                # the way a stress run started the suite: Ctrl-C must end it all the same.
                watch = subprocess.Popen(
                    [sys.executable, "-c", IGNORING_SIGINT, "-m", "distill.cli",
                     "--gateway", gateway.address, "alias", "watch"],
                    cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                    env={**os.environ, "COLUMNS": "1000", "PYTHONUNBUFFERED": "1"})
            wait_for(lambda: "[1] support  v1  teacher gpt-4o" in log.read_text(), log.read_text)
            client.set_alias("support", teacher="gpt-4o-mini", expected_version=1)
            wait_for(lambda: "[2] support  v2  teacher gpt-4o-mini" in log.read_text(),
                     log.read_text)
        assert log.read_text().splitlines()[0] == "[1] snapshot: 1 aliases"
        watch.send_signal(signal.SIGINT)
        assert watch.wait(60) == 130
    finally:
        if watch is not None and watch.poll() is None:
            watch.kill()
        gateway.stop()


def test_chat_asks_the_alias_through_an_openai_endpoint(tmp_path):
    """`distill chat` is the openai SDK's call: the fake provider (OpenAI's wire protocol) stands
    in for the router; the model it is asked for is the alias."""
    from tests.fixtures.fake_provider import run_fake_provider

    def chat(*args: str, url: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "distill.cli", "chat", *args, "--router", url],
            cwd=REPO, env={**os.environ, "DISTILL_API_KEY": "sk-project"}, capture_output=True,
            text=True, timeout=120, check=False)

    with run_fake_provider(api_key="sk-project") as fake:
        base = fake.openai_base_url.removesuffix("/v1")
        answered = chat("support-bot", "Where is my parcel?", "--max-tokens", "8", url=base)
        fake.push_faults({"status": 404, "message": "The model `nope` does not exist"})
        missing = chat("nope", "hello", url=base)
        seen = fake.stats()
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == "reply 1 to: Where is my parcel?"
    assert missing.returncode == 2  # a user mistake: NOT_FOUND
    assert "NOT_FOUND" in missing.stderr and "404" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert seen["received"] == 2

    with held_port() as port:  # nothing listens there
        unreachable = chat("support-bot", "hi", url=f"http://127.0.0.1:{port}")
    assert unreachable.returncode == 1
    assert "no router at" in unreachable.stderr and "distill up" in unreachable.stderr


def test_alias_set_takes_a_live_judge_in_its_routing_file(tmp_path):
    """`--routing FILE` is AliasRouting's JSON form: its `judge` (a JudgeSpec and a sample
    rate) is kept with the version; a bad one is refused naming the field."""
    from distill.client import Distiller

    env = {"DISTILL_STORE_URL": f"file://{tmp_path / 'store'}",
           "DISTILL_GATEWAY_DB_PATH": str(tmp_path / "gateway.db")}
    gateway = start_module("services.gateway", tmp_path / "logs", env)

    def alias_set(routing: dict, expected: int) -> subprocess.CompletedProcess:
        path = tmp_path / f"routing-{expected}.json"
        path.write_text(json.dumps(routing))
        return subprocess.run(
            [sys.executable, "-m", "distill.cli", "--gateway", gateway.address, "alias", "set",
             "support", "--teacher", "gpt-4o-mini", "--expected-version", str(expected),
             "--routing", str(path)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)

    try:
        judged = alias_set({"validator": {"labels": ["yes", "no"]}, "judge": {
            "judge": {"llm": {"rubricText": "short and right"}}, "sampleRate": 0.05}}, 0)
        assert judged.returncode == 0, judged.stderr
        bad = alias_set({"judge": {"judge": {"length": {"maxChars": 9}}, "sampleRate": 2}}, 1)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert "routing.judge.sample_rate: must be in (0, 1], got 2" in bad.stderr
        with Distiller(gateway.address) as client:
            alias = client.get_alias("support")
        assert alias.version == 1 and alias.routing.judge.sample_rate == 0.05
        assert alias.routing.judge.judge.llm.rubric_text == "short and right"
    finally:
        gateway.stop()
