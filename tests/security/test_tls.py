"""TLS: every server takes a certificate and key; the SDK, the CLI, the Node client and the
gateway's stage channels trust a CA file. A throwaway CA (trustme) signs everything here."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from distill.client import DistillClientError, Distiller
from services.common.channels import PLAINTEXT, ChannelSecurity
from services.common.errors import Unavailable
from services.common.health_probe import check_health
from services.common.server import start
from services.gateway.server import build
from services.gateway.settings import GatewaySettings
from services.gateway.stages import StageClients
from services.generator.server import build as build_generator
from services.generator.settings import GeneratorSettings
from tests.e2e.test_node_client import CLIENT, TRAIN
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
