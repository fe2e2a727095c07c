"""Issue 19, item 1: the server's keys go only to the endpoints configured for them, and a
spec's base_url cannot reach link-local, metadata, private or (unless allowed) loopback
addresses, or read an unconfigured server's error bodies back.

The attacker's server is a second fake provider on 127.0.0.1 (it records the keys it is sent);
the generator and the gateway are the real services over gRPC."""

from __future__ import annotations

import ipaddress
import socket

import grpc
import pytest

from distill.v1 import common_pb2, generator_pb2
from services.common import errors
from services.common.providers import resolve_model_spec
from services.common.providers.endpoints import (
    EndpointPolicy,
    address_refusal,
    authorize,
)
from tests.fixtures.fake_provider import run_fake_provider
from tests.generator.conftest import KEY, KEY_ENV

# Every test here: a connection beyond loopback fails it (conftest.py).
pytestmark = pytest.mark.usefixtures("loopback_only")

SERVER_SECRET = "sk-SERVER-OPENAI-KEY-do-not-leak-7f3a"
OPENAI = common_pb2.PROVIDER_OPENAI
ANTHROPIC = common_pb2.PROVIDER_ANTHROPIC


@pytest.fixture
def attacker():
    """The caller's own HTTP server (speaks both wire protocols, records every key)."""
    with run_fake_provider() as handle:
        yield handle


def request(teacher: common_pb2.ModelSpec) -> generator_pb2.GenerateRequest:
    return generator_pb2.GenerateRequest(
        prompts=generator_pb2.InlinePrompts(prompts=[common_pb2.Prompt(
            id="p0", messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER,
                                                      content="hello")])]),
        n_samples=1, job_id="attack", teacher=teacher)


async def outcome(generator, teacher: common_pb2.ModelSpec):
    """The stream's last event, or its error."""
    try:
        return [e async for e in generator.stub.Generate(request(teacher), timeout=60)][-1]
    except grpc.aio.AioRpcError as exc:
        return exc


def spec(wire: int, base_url: str = "", **kw) -> common_pb2.ModelSpec:
    return common_pb2.ModelSpec(provider=wire, base_url=base_url, **kw,
                                model="gpt-4o-mini" if wire == OPENAI else "claude-haiku")


@pytest.mark.parametrize("wire", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
@pytest.mark.parametrize("key_env", ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", KEY_ENV,
                                     "AWS_SECRET_ACCESS_KEY", "DISTILL_S3_SECRET_KEY"])
async def test_the_callers_own_server_receives_no_key(generator_factory, attacker, monkeypatch,
                                                      wire, key_env):
    """The reported attack: base_url at the caller's server, api_key_env naming a server key.
    Refused before any connection, also when the caller's host is on the allow-list."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY",
                 "DISTILL_S3_SECRET_KEY"):
        monkeypatch.setenv(name, SERVER_SECRET)
    url = attacker.openai_base_url if wire == OPENAI else attacker.anthropic_base_url
    for allowed in ([], ["127.0.0.1"]):
        generator = await generator_factory(allowed_base_url_hosts=allowed,
                                            allow_loopback_addresses=True)
        error = await outcome(generator, spec(wire, url, api_key_env=key_env))
        assert isinstance(error, grpc.aio.AioRpcError)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
        assert "teacher." in error.details() and SERVER_SECRET not in error.details()
    assert attacker.stats()["received"] == 0 and not attacker.server.keys_seen


@pytest.mark.parametrize("wire", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
async def test_an_allowed_base_url_is_called_without_any_server_key(
        generator_factory, attacker, monkeypatch, wire):
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SERVER_SECRET)
    generator = await generator_factory(allowed_base_url_hosts=["127.0.0.1"],
                                        allow_loopback_addresses=True)
    url = attacker.openai_base_url if wire == OPENAI else attacker.anthropic_base_url
    done = await outcome(generator, spec(wire, url))
    assert not isinstance(done, grpc.aio.AioRpcError), done.details()
    assert done.summary.candidate_count == 1
    assert attacker.stats()["received"] == 1
    assert SERVER_SECRET not in attacker.server.keys_seen and KEY not in attacker.server.keys_seen


async def test_the_configured_endpoint_gets_its_key_and_no_other(generator_factory, fake,
                                                                 monkeypatch):
    """The fake is configured (fake-openai, KEY_ENV): by name or by its URL it gets KEY."""
    monkeypatch.setenv("OPENAI_API_KEY", SERVER_SECRET)
    generator = await generator_factory()
    for teacher in (spec(OPENAI, endpoint="fake-openai"), spec(OPENAI, fake.openai_base_url)):
        done = await outcome(generator, teacher)
        assert not isinstance(done, grpc.aio.AioRpcError), done.details()
    assert fake.server.keys_seen == {KEY}


async def test_unconfigured_servers_error_bodies_are_not_echoed(generator_factory, attacker,
                                                                fake):
    """A 400 whose body is an internal page: echoed from a configured endpoint (it helps its
    operator), not from a spec's base_url (it would be SSRF with the reply read back)."""
    page = "<html>internal admin console: db password hunter2</html>"
    generator = await generator_factory(allowed_base_url_hosts=["127.0.0.1"],
                                        allow_loopback_addresses=True)
    attacker.push_faults({"status": 400, "message": page})
    error = await outcome(generator, spec(OPENAI, attacker.openai_base_url))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "HTTP 400" in error.details() and "hunter2" not in error.details()
    fake.push_faults({"status": 400, "message": page})
    error = await outcome(generator, spec(OPENAI, endpoint="fake-openai"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "hunter2" in error.details()


REFUSED = ["169.254.169.254", "fd00:ec2::254", "169.254.170.2", "fe80::1",
           "::ffff:169.254.169.254", "10.0.0.5", "172.16.3.4", "192.168.1.1", "100.64.0.1",
           "fc00::1", "0.0.0.0", "::",
           "224.0.0.1", "127.0.0.1", "::1", "::ffff:127.0.0.1"]


@pytest.mark.parametrize("address", REFUSED)
def test_the_address_policy_refuses_what_a_spec_may_not_reach(address):
    assert address_refusal(ipaddress.ip_address(address), EndpointPolicy()) is not None


def test_the_address_policy_opens_private_and_loopback_only_when_allowed():
    ip = ipaddress.ip_address
    assert address_refusal(ip("93.184.216.34"), EndpointPolicy()) is None
    assert address_refusal(ip("2606:4700::1111"), EndpointPolicy()) is None
    both = EndpointPolicy(allow_private_addresses=True, allow_loopback_addresses=True)
    for address in ("10.0.0.5", "192.168.1.1", "127.0.0.1", "::1"):
        assert address_refusal(ip(address), both) is None
    # Metadata and link-local stay refused whatever is allowed.
    for address in ("169.254.169.254", "fd00:ec2::254", "fe80::1"):
        assert address_refusal(ip(address), both) is not None


@pytest.mark.parametrize("resolved",
                         ["169.254.169.254", "fd00:ec2::254", "10.1.2.3", "127.0.0.1"])
def test_a_name_pointing_at_a_refused_address_is_refused(resolved):
    """Checked after resolution: an allow-listed name is only as good as what it resolves to,
    and one bad address among several refuses it."""
    config = resolve_model_spec(spec(OPENAI, "https://models.example.com/v1"), field="teacher",
                                default_temperature=0.8)
    policy = EndpointPolicy(allowed_base_url_hosts=frozenset({"models.example.com"}))
    asked = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["93.184.216.34", resolved]

    with pytest.raises(errors.PermissionDenied, match=f"resolves to {resolved}"):
        authorize(config, policy, field="teacher", resolve=resolve)
    assert asked == [("models.example.com", 443)]
    public = authorize(config, policy, field="teacher", resolve=lambda h, p: ["93.184.216.34"])
    assert public.base_url == "https://models.example.com/v1" and public.api_key_env == ""


async def test_the_generator_resolves_before_connecting(generator_factory, monkeypatch):
    """Through the service: a name resolving to the metadata address is PERMISSION_DENIED
    and no connection is tried (the guard records any)."""
    generator = await generator_factory(allowed_base_url_hosts=["metadata.example.com"])
    seen = []

    def getaddrinfo(host, port, *args, **kwargs):
        seen.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    error = await outcome(generator, spec(OPENAI, "http://metadata.example.com/latest/"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "cloud metadata" in error.details() and seen == ["metadata.example.com"]


@pytest.mark.parametrize(("url", "host"), [
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
    ("http://10.0.0.7:8080/v1", "10.0.0.7"),
    ("http://127.0.0.1:9/v1", "127.0.0.1"),
])
async def test_literal_refused_addresses_are_refused_even_when_allow_listed(generator_factory,
                                                                           url, host):
    generator = await generator_factory(allowed_base_url_hosts=[host])
    error = await outcome(generator, spec(OPENAI, url))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()


async def test_a_host_off_the_allow_list_is_refused(generator_factory):
    generator = await generator_factory(allow_private_addresses=True)
    error = await outcome(generator, spec(OPENAI, "http://10.0.0.7/v1"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not on this server's allow-list" in error.details()


def test_the_gateways_preflight_applies_the_same_rules(tmp_path, monkeypatch):
    """Estimate lists the refusal (it needs no key); Distill refuses with PERMISSION_DENIED
    before any job exists, for the metadata address and for a server key sent elsewhere."""
    from distill.client import DistillClientError, Distiller
    from distill.v1 import gateway_pb2
    from services.gateway.server import build
    from services.gateway.settings import GatewaySettings
    from tests.fixtures.inprocess import serve_in_thread

    monkeypatch.setenv("OPENAI_API_KEY", SERVER_SECRET)
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 's'}",
                               db_path=tmp_path / "gateway.db",
                               allowed_base_url_hosts=["169.254.169.254", "127.0.0.1"])
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "2 + 2?", "response": "4"}\n' * 3)
    with serve_in_thread(settings, lambda: build(settings)) as address, \
            Distiller(address) as client:
        dataset = client.upload(data)
        for teacher, fragment in (
                (spec(OPENAI, "http://169.254.169.254/latest/"), "cloud metadata"),
                (spec(OPENAI, "http://127.0.0.1:9/v1", api_key_env="OPENAI_API_KEY"),
                 "holds no key for '127.0.0.1'")):
            job = gateway_pb2.DistillSpec(dataset=dataset, student_model="smollm2-135m",
                                          teacher=teacher)
            job.judge.judge.reference.mode = common_pb2.MATCH_MODE_LABEL
            warnings = client.estimate(job).warnings
            assert any("PermissionDenied" in w or fragment in w for w in warnings), warnings
            with pytest.raises(DistillClientError) as refused:
                client.distill(job)
            assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert fragment in refused.value.message
            assert SERVER_SECRET not in refused.value.message
        assert not list(client.list())
