"""TLS: every server takes a certificate and key; the SDK, the CLI, the Node client and the
gateway's stage channels trust a CA file. A throwaway CA (trustme) signs everything here."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import re
import signal
import ssl
import subprocess
import sys

import grpc
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from distill.client import DistillClientError, Distiller
from distill.local_suite import DEFAULT_PORTS
from distill.v1 import common_pb2, gateway_pb2
from services.common.channels import PLAINTEXT, ChannelSecurity
from services.common.errors import Unavailable
from services.common.health_probe import check_health
from services.common.server import start
from services.gateway.server import build
from services.gateway.settings import GatewaySettings
from services.gateway.stages import StageClients
from services.generator.server import build as build_generator
from services.generator.settings import GeneratorSettings
from tests.e2e.conftest import write_dataset
from tests.e2e.test_node_client import CLIENT, TRAIN
from tests.fixtures import waits
from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.processes import REPO

TOKEN = "tls-test-token"


@pytest.fixture
def tls_gateway(tmp_path, tls, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 'store'}",
                               db_path=tmp_path / "gateway.db", auth_token=TOKEN,
                               tls_cert_file=tls.cert_file, tls_key_file=tls.key_file)
    with serve_in_thread(settings, lambda: build(settings)) as address:
        yield address


def test_sdk_round_trip_over_tls(tls_gateway, tls, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"prompt": "2 + 2?", "response": "4"}\n')
    with Distiller(tls_gateway, token=TOKEN, ca_file=tls.ca_file) as client:
        ref = client.upload(data)
        assert client.download(ref.uri, tmp_path / "back.jsonl").read_bytes() == data.read_bytes()
        assert list(client.list()) == []


@pytest.mark.parametrize("how", ["plaintext", "another CA"])
def test_a_client_without_the_servers_ca_cannot_talk_to_it(tls_gateway, tls, how):
    ca_file = tls.other_ca_file if how == "another CA" else None
    with Distiller(tls_gateway, token=TOKEN, ca_file=ca_file, timeout=10) as client, \
            pytest.raises(DistillClientError) as raised:
        list(client.list())
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_cli_round_trip_over_tls(tls_gateway, tls):
    env = {"PATH": os.environ["PATH"], "DISTILL_AUTH_TOKEN": TOKEN}

    def jobs(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "distill.cli", "--gateway", tls_gateway,
                               *flags, "jobs"], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=120, check=False)

    listed = jobs("--ca-file", str(tls.ca_file))
    assert listed.returncode == 0, listed.stderr
    refused = jobs()  # plaintext against the TLS port
    assert refused.returncode != 0 and "UNAVAILABLE" in refused.stderr


def test_node_client_round_trip_over_tls(node, tls_gateway, tls, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    env["DISTILL_AUTH_TOKEN"] = TOKEN

    def estimate(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([node, str(CLIENT), "--gateway", tls_gateway, *flags,
                               "--dataset", str(TRAIN)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    run = estimate("--ca-file", str(tls.ca_file))
    assert run.returncode == 0, run.stderr
    assert "prompts: 40" in run.stdout
    plaintext = estimate("--timeout", "10")
    assert plaintext.returncode == 1, plaintext.stderr
    assert "UNAVAILABLE" in plaintext.stderr


async def test_gateway_reaches_a_tls_stage_with_its_ca(tmp_path, tls):
    settings = GeneratorSettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path}",
                                 tls_cert_file=tls.cert_file, tls_key_file=tls.key_file)
    running = await start(settings, build_generator(settings))
    address = f"127.0.0.1:{running.port}"
    try:
        trusted = ChannelSecurity(tls.ca_file)
        async with trusted.channel(address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # the container health probe: with the CA it sees SERVING, without it nothing
        probe = functools.partial(asyncio.to_thread, check_health, address)  # it blocks
        assert await probe(timeout=30, ca_file=tls.ca_file) == "SERVING"
        assert await probe(timeout=5) == "UNREACHABLE"
        # through the stage clients the gateway builds from its settings
        for security, reachable in ((trusted, True), (PLAINTEXT, False),
                                    (ChannelSecurity(tls.other_ca_file), False)):
            clients = StageClients.connect(address, address, address, address, 60,
                                           connect_seconds=3, security=security)
            try:
                if reachable:
                    await clients.ready("generator")
                else:
                    with pytest.raises(Unavailable):
                        await clients.ready("generator")
            finally:
                await clients.close()
    finally:
        await running.stop()


def test_a_certificate_needs_its_key(tls):
    with pytest.raises(ValidationError) as raised:
        GatewaySettings(tls_cert_file=tls.cert_file)
    assert "tls_cert_file and tls_key_file" in str(raised.value)


@pytest.mark.slow
def test_distill_up_serves_the_whole_suite_over_tls(tls, tmp_path, tiny_llama_dir):
    """`distill up --tls-cert --tls-key --ca-file`: every gRPC port and the router's HTTP API
    speak TLS only; a job crosses gateway -> generator -> judge over TLS (the gateway trusts
    the CA); the router reaches the gateway over TLS; the SDK and the CLI connect with the CA,
    and plaintext clients are refused."""
    key = "sk-up-tls-" + os.urandom(6).hex()
    with run_fake_provider() as fake:
        # gRPC ports and their metrics ports (+1000) below the ephemeral range (32768+).
        base = random.randrange(20000, 31000, 10)
        addresses = {name: f"127.0.0.1:{base + i}" for i, name in enumerate(DEFAULT_PORTS)}
        gateway = addresses["gateway"]
        log = tmp_path / "up.log"
        env = {**os.environ, **fake.env("UP_TEACHER_KEY"), "UP_TEACHER_KEY": key,
               "COLUMNS": "400"}
        with open(log, "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "distill.cli", "--home", str(tmp_path / "home"),
                 "--base-port", str(base), "up", "--tls-cert", str(tls.cert_file),
                 "--tls-key", str(tls.key_file), "--ca-file", str(tls.ca_file)],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            def told() -> bool:
                assert proc.poll() is None, log.read_text()
                return "Ctrl-C stops all six" in log.read_text()

            waits.wait_for(told, lambda: f"distill up to start: {log.read_text()}")
            printed = log.read_text()
            assert f"--gateway {gateway} --ca-file {tls.ca_file}" in printed, printed
            router_url = re.search(r"https://127\.0\.0\.1:\d+/v1", printed).group(0)
            for name, address in addresses.items():  # TLS only, every one
                assert check_health(address, timeout=10, ca_file=tls.ca_file) == "SERVING", name
                assert check_health(address, timeout=2) == "UNREACHABLE", name

            # The SDK, with the CA: a job whose curation runs on the TLS stages.
            data = write_dataset(tmp_path / "data.jsonl", 12)
            with Distiller(gateway, ca_file=tls.ca_file) as client:
                teacher = common_pb2.ModelSpec(
                    provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                    base_url=fake.openai_base_url, api_key_env="UP_TEACHER_KEY", max_tokens=8)
                job = client.distill(client.spec(
                    dataset=client.upload(data), teacher=teacher, student=str(tiny_llama_dir),
                    judge=common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
                        mode=common_pb2.MATCH_MODE_LABEL)),
                    n_samples=2, top_k=1, training={"max_steps": 1, "batch_size": 2,
                                                    "max_seq_length": 64},
                    **{"eval": {"holdout_fraction": 0}}))
                past_curation = {gateway_pb2.JOB_STATE_TRAINING, gateway_pb2.JOB_STATE_EXPORTING,
                                 gateway_pb2.JOB_STATE_EVALUATING, gateway_pb2.JOB_STATE_SUCCEEDED}

                def curated() -> gateway_pb2.Job | None:
                    now = client.get(job.name)
                    assert now.state != gateway_pb2.JOB_STATE_FAILED, now.error
                    return now if now.state in past_curation else None

                done = waits.wait_for(curated, "the job past curation", timeout=300)
                assert done.outputs.curated.uri and done.teacher_usage.requests > 0
                client.cancel(job.name)

            # The router's HTTP API over TLS (the real openai SDK); its alias list comes
            # from the gateway, over TLS with the CA.
            context = ssl.create_default_context(cafile=str(tls.ca_file))
            with openai.OpenAI(base_url=router_url, api_key="unused",
                               http_client=openai.DefaultHttpxClient(verify=context)) as router:
                assert router.models.list().data == []
            with openai.OpenAI(base_url=router_url.replace("https", "http"), api_key="unused",
                               max_retries=0) as plaintext, \
                    pytest.raises(openai.APIConnectionError):
                plaintext.models.list()

            # The CLI, with the CA; and without it (plaintext) refused.
            def jobs(*flags: str) -> subprocess.CompletedProcess:
                return subprocess.run(
                    [sys.executable, "-m", "distill.cli", "--gateway", gateway, *flags, "jobs"],
                    cwd=REPO, env={**os.environ, "COLUMNS": "400"}, capture_output=True,
                    text=True, timeout=120, check=False)

            listed = jobs("--ca-file", str(tls.ca_file))
            assert listed.returncode == 0 and job.name.removeprefix("jobs/") in listed.stdout, \
                listed.stderr
            refused = jobs()
            assert refused.returncode != 0 and "UNAVAILABLE" in refused.stderr
            with Distiller(gateway, timeout=10) as plaintext_sdk, \
                    pytest.raises(DistillClientError) as raised:
                list(plaintext_sdk.list())
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            finally:
                proc.kill()
        assert proc.returncode == 0, log.read_text()
        assert all(check_health(a, timeout=0.5, ca_file=tls.ca_file) == "UNREACHABLE"
                   for a in addresses.values())


@pytest.mark.parametrize(("flags", "message"), [
    (["--tls-cert", "{cert}"], "--tls-cert and --tls-key: give both"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}"], "--ca-file: TLS needs the CA"),
    (["--tls-cert", "{cert}", "--tls-key", "{missing}", "--ca-file", "{ca}"],
     "--tls-key: no file at"),
])
def test_distill_up_names_the_missing_tls_flag(tls, tmp_path, flags, message):
    paths = {"cert": tls.cert_file, "key": tls.key_file, "ca": tls.ca_file,
             "missing": tmp_path / "nothing.key"}
    env = {k: v for k, v in os.environ.items() if k != "DISTILL_CA_FILE"}
    result = subprocess.run(
        [sys.executable, "-m", "distill.cli", "--home", str(tmp_path), "up",
         *(f.format(**paths) for f in flags)], cwd=REPO, env={**env, "COLUMNS": "400"},
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "logs").exists()
