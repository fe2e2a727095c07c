"""Issue 19: DNS rebinding. A spec's base_url names a host whose DNS answers a loopback address
to the endpoint policy's check and then the cloud metadata address (or a private one) to every
later lookup. The connection must go to the address that was checked, and nowhere else.

The rebinding DNS is this process's `socket.getaddrinfo` (every resolver here ends in it);
`loopback_only` (conftest.py) fails the test when any socket is handed a non-loopback address,
so a client that looked the name up again would be caught before a packet left the machine.
The checked address is the fake provider's 127.0.0.1, which must receive the call."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import ssl
from dataclasses import dataclass, field, replace

import grpc
import httpcore
import httpx
import pytest
import trustme

from distill.v1 import common_pb2, gateway_pb2, router_pb2
from services.common.providers import (
    CompletionRequest,
    EndpointPolicy,
    Message,
    authorize,
    open_provider,
    resolve_model_spec,
)
from services.common.providers.pinning import PinnedBackend, Pins, pinned_httpx_client
from services.common.providers.spec import build_provider
from services.router.answering import Answerer
from services.router.chat import ChatCall
from services.router.settings import RouterSettings
from services.router.targets import Target
from tests.fixtures.fake_provider import run_fake_provider
from tests.security.test_endpoints import outcome, spec

pytestmark = pytest.mark.usefixtures("loopback_only")

HOST = "rebind.example.com"
OPENAI = common_pb2.PROVIDER_OPENAI
ANTHROPIC = common_pb2.PROVIDER_ANTHROPIC


@pytest.fixture
def upstream():
    """The checked address's server (the fake provider on 127.0.0.1)."""
    with run_fake_provider() as handle:
        yield handle


@pytest.fixture(params=["169.254.169.254", "10.0.0.5"], ids=["metadata", "private"])
def rebinding(request, loopback_only, monkeypatch) -> list[str]:
    """DNS for HOST: 127.0.0.1 to the first lookup, the parameter's address to later ones.
    Returns the names looked up; other names go to the guard's lookup (loopback only)."""
    guarded = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != HOST:
            return guarded(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else request.param
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def renamed(url: str) -> str:
    return url.replace("127.0.0.1", HOST)


POLICY = EndpointPolicy(allowed_base_url_hosts=frozenset({HOST}), allow_loopback_addresses=True)


@pytest.mark.parametrize("wire", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
async def test_the_sdk_providers_connect_only_to_the_checked_address(upstream, rebinding, wire):
    url = upstream.openai_base_url if wire == OPENAI else upstream.anthropic_base_url
    config = resolve_model_spec(spec(wire, renamed(url)), field="teacher",
                                default_temperature=0)
    provider = open_provider(config, field="teacher", policy=POLICY)
    try:
        for _ in range(2):  # a second call, on a new connection or a kept one, as well
            completion = await provider.complete(
                CompletionRequest((Message("user", "2 + 2?"),), 0.0, 16))
            assert completion.choices
    finally:
        await provider.aclose()
    assert upstream.stats()["received"] == 2
    assert rebinding == [HOST]  # the policy's lookup only; the connections asked no DNS


async def test_the_generator_calls_the_checked_address(generator_factory, upstream, rebinding):
    """Through the service over gRPC: the job's teacher calls reach 127.0.0.1."""
    generator = await generator_factory(allowed_base_url_hosts=[HOST],
                                        allow_loopback_addresses=True, teacher_processes=0)
    done = await outcome(generator, spec(OPENAI, renamed(upstream.openai_base_url)))
    assert not isinstance(done, grpc.aio.AioRpcError), done.details()
    assert done.summary.candidate_count == 1
    assert upstream.stats()["received"] == 1 and rebinding == [HOST]


async def test_the_routers_upstream_calls_go_only_to_the_checked_address(upstream, rebinding):
    """The router's upstream target (httpx): whole answers and streams, over the checked
    address; its other HTTP (the engines') keeps the router's own client."""
    settings = RouterSettings(allowed_base_url_hosts=[HOST], allow_loopback_addresses=True)
    record = gateway_pb2.AliasTarget(upstream=gateway_pb2.Upstream(
        base_url=renamed(upstream.openai_base_url), model="gpt-4o-mini"))
    target = Target("up", 1, router_pb2.TARGET_KIND_UPSTREAM, "gpt-4o-mini", 64, record)
    call = ChatCall("up", (Message("user", "ping"),))
    async with httpx.AsyncClient(trust_env=False) as shared:
        answerer = Answerer(settings, None, None, shared)  # no students: no engines or files
        try:
            assert (await answerer.answer(target, call)).content.endswith("to: ping")
            # The streamed request (the fake answers it without SSE: no text, but its totals).
            deltas = [d async for d in answerer.stream(target, call)]
            assert deltas[-1].final is not None
        finally:
            await answerer.aclose()
    assert upstream.stats()["received"] == 2 and rebinding == [HOST]


async def test_a_pinned_client_refuses_any_other_name(upstream, rebinding):
    """A name the policy did not check (a redirect's, say) gets no lookup and no connection."""
    pins = Pins.of(renamed(upstream.openai_base_url), ("127.0.0.1",))
    async with pinned_httpx_client(pins) as http:
        with pytest.raises(httpx.ConnectError, match="not checked"):
            await http.get("http://elsewhere.example.com/")
    assert rebinding == [] and upstream.stats()["received"] == 0


@dataclass
class TlsUpstream:
    """An HTTPS server on 127.0.0.1 whose certificate names HOST (a throwaway CA's); it records
    the TLS server name and Host header of each request and answers a chat completion."""

    port: int
    ca: trustme.CA
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[bytes] = field(default_factory=list)


@pytest.fixture
async def tls_upstream():
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    hosts: list[bytes] = []
    body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {
                           "role": "assistant", "content": "4"}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                 "total_tokens": 2}}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        hosts.extend(line.split(b":", 1)[1].strip() for line in lines
                     if line.lower().startswith(b"host:"))
        length = next((int(line.split(b":", 1)[1]) for line in lines
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with server:
        yield TlsUpstream(server.sockets[0].getsockname()[1], ca, names, hosts)


async def test_tls_to_a_pinned_host_verifies_the_name_sdk(tls_upstream, rebinding,
                                                          monkeypatch, tmp_path):
    """The SDK providers over https: the connection goes to the checked 127.0.0.1, the TLS
    server name is the host's, its certificate is verified for it (the CA is trusted through
    SSL_CERT_FILE, as an operator would), and the Host header is the host's."""
    tls_upstream.ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    url = f"https://{HOST}:{tls_upstream.port}/v1"
    config = resolve_model_spec(spec(OPENAI, url), field="teacher", default_temperature=0)
    provider = open_provider(config, field="teacher", policy=POLICY)
    try:
        completion = await provider.complete(
            CompletionRequest((Message("user", "2 + 2?"),), 0.0, 16))
    finally:
        await provider.aclose()
    assert completion.choices[0].text == "4"
    assert tls_upstream.server_names == [HOST]
    assert tls_upstream.hosts == [f"{HOST}:{tls_upstream.port}".encode()]
    assert rebinding == [HOST]


async def test_tls_to_a_pinned_host_verifies_the_name_httpx(tls_upstream, rebinding):
    """The same through the httpcore backend of the router's upstream client."""
    context = ssl.create_default_context()
    tls_upstream.ca.configure_trust(context)
    pool = httpcore.AsyncConnectionPool(ssl_context=context,
                                        network_backend=PinnedBackend(Pins(HOST, ("127.0.0.1",))))
    async with pool:
        reply = await pool.request("POST", f"https://{HOST}:{tls_upstream.port}/v1", content=b"")
        assert reply.status == 200
    assert tls_upstream.server_names == [HOST]
    assert tls_upstream.hosts == [f"{HOST}:{tls_upstream.port}".encode()]
    assert rebinding == []  # no lookup at all: nothing was checked here


def test_only_checked_configs_are_built_and_the_pins_cross_to_call_processes(upstream):
    """Call processes get the config by pickle (call_worker.py) and build it there: the
    checked addresses travel with it, and a spec's base_url without them is never built."""
    config = authorize(resolve_model_spec(spec(OPENAI, upstream.openai_base_url),
                                          field="teacher", default_temperature=0),
                       EndpointPolicy(allowed_base_url_hosts=frozenset({"127.0.0.1"}),
                                      allow_loopback_addresses=True), field="teacher")
    assert pickle.loads(pickle.dumps(config)).pinned_addresses == ("127.0.0.1",)
    with pytest.raises(RuntimeError, match="not checked by the endpoint policy"):
        build_provider(replace(config, pinned_addresses=()), "")
