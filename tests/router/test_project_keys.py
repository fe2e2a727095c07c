"""Project API keys on the router: a project's key reaches its own aliases only, over OpenAI's
HTTP API (the official `openai` SDK) and gRPC, and a wrong, missing or revoked key nothing.

Real gateway (admin key, internal token, projects alpha and beta) and router process over
loopback; teacher aliases answered by the fake provider.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets

import grpc
import httpx
import openai
import pytest

from distill.client import Distiller
from distill.v1 import (
    common_pb2,
    directory_pb2,
    directory_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from services.gateway.server import build as build_gateway
from services.gateway.settings import GatewaySettings
from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.processes import start_module
from tests.fixtures.router_stack import router_environment, teacher_target
from tests.fixtures.waits import wait_for
from tests.router.conftest import TEST_ROUTER_ENV, Projects

HELLO = [{"role": "user", "content": "hello"}]
WRONG_KEYS = ("wrong-key", "dk_" + "x" * 43)


@pytest.fixture(scope="module")
def aliases(projects: Projects) -> Projects:
    """alpha: alpha-bot and bot (version 1); beta: beta-bot and bot (version 2)."""
    with projects.client("alpha") as alpha, projects.client("beta") as beta:
        alpha.set_alias("alpha-bot", target=teacher_target(projects.fake))
        alpha.set_alias("bot", target=teacher_target(projects.fake))
        beta.set_alias("beta-bot", target=teacher_target(projects.fake))
        beta.set_alias("bot", target=teacher_target(projects.fake))
        beta.set_alias("bot", target=teacher_target(projects.fake, max_tokens_limit=32),
                       expected_version=1)
    return projects


def sdk(stack: Projects | str, key: str) -> openai.OpenAI:
    url = stack if isinstance(stack, str) else stack.http_url
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0)


def post(stack: Projects, key: str | None, body: dict) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(f"{stack.http_url}/chat/completions", json=body, headers=headers,
                      timeout=60, trust_env=False)


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def chat_request(model: str) -> router_pb2.ChatRequest:
    return router_pb2.ChatRequest(model=model, messages=[
        common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="hello")])


def grpc_error(call, request: router_pb2.ChatRequest, metadata: tuple) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failed:
        reply = call(request, metadata=metadata)
        if not isinstance(reply, router_pb2.ChatResponse):
            list(reply)  # a stream fails on its first read
    return failed.value


def test_models_lists_only_the_callers_aliases(aliases):
    for project, expected in (("alpha", {"alpha-bot", "bot"}), ("beta", {"beta-bot", "bot"})):
        models = sdk(aliases, aliases.keys[project]).models.list().data
        assert {m.id for m in models} == expected
        assert {m.owned_by for m in models} == {project}


def test_another_projects_alias_is_404_exactly_like_an_unknown_one(aliases):
    alpha = sdk(aliases, aliases.keys["alpha"])
    received = aliases.fake.stats()["received"]
    for model in ("beta-bot", "beta-bot@1"):
        with pytest.raises(openai.NotFoundError) as plain:
            alpha.chat.completions.create(model=model, messages=HELLO)
        assert plain.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError) as streamed:
            alpha.chat.completions.create(model=model, messages=HELLO, stream=True)
        assert streamed.value.code == "model_not_found"
    # Byte for byte the answer for an alias nobody has ("nope-bot": same length as "beta-bot").
    for stream in (False, True):
        theirs = post(aliases, aliases.keys["alpha"],
                      {"model": "beta-bot", "messages": HELLO, "stream": stream})
        nobodys = post(aliases, aliases.keys["alpha"],
                       {"model": "nope-bot", "messages": HELLO, "stream": stream})
        assert theirs.status_code == nobodys.status_code == 404
        assert theirs.content == nobodys.content.replace(b"nope-bot", b"beta-bot")
        assert theirs.headers["content-type"] == nobodys.headers["content-type"]
    assert aliases.fake.stats()["received"] == received  # nothing was asked of the teacher


def test_the_same_alias_name_means_each_projects_own(aliases):
    alpha = sdk(aliases, aliases.keys["alpha"]).chat.completions.create(
        model="bot", messages=HELLO, max_tokens=40)
    assert alpha.model_extra["distill"]["version"] == 1
    # beta's bot (version 2) allows 32 tokens: the same request is over its limit.
    with pytest.raises(openai.BadRequestError, match="over the limit of alias 'bot' \\(32\\)"):
        sdk(aliases, aliases.keys["beta"]).chat.completions.create(
            model="bot", messages=HELLO, max_tokens=40)
    for project, version in (("alpha", 1), ("beta", 2)):
        *_, final = aliases.stub.ChatStream(chat_request("bot"),
                                            metadata=bearer(aliases.keys[project]))
        assert final.served_by.version == version
        streamed = sdk(aliases, aliases.keys[project]).chat.completions.create(
            model="bot", messages=HELLO, max_tokens=8, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


@pytest.mark.parametrize("key", [None, *WRONG_KEYS, "internal"])
def test_no_wrong_or_internal_key_is_401_invalid_api_key(aliases, key):
    key = aliases.internal_token if key == "internal" else key  # the router's, not a caller's
    for stream in (False, True):
        response = post(aliases, key, {"model": "alpha-bot", "messages": HELLO,
                                       "stream": stream})
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.json()["error"]["type"] == "authentication_error"
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    models = httpx.get(f"{aliases.http_url}/models", headers=headers, timeout=60,
                       trust_env=False)
    assert models.status_code == 401
    assert models.json()["error"]["code"] == "invalid_api_key"
    if key is not None:
        with pytest.raises(openai.AuthenticationError) as refused:
            sdk(aliases, key).models.list()
        assert refused.value.code == "invalid_api_key"
    metadata = bearer(key) if key is not None else ()
    for call in (aliases.stub.Chat, aliases.stub.ChatStream):
        error = grpc_error(call, chat_request("alpha-bot"), metadata=metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_grpc_another_projects_alias_is_not_found_like_an_unknown_one(aliases):
    metadata = bearer(aliases.keys["alpha"])
    reply = aliases.stub.Chat(chat_request("alpha-bot"), metadata=metadata)
    assert reply.content and reply.served_by.alias == "alpha-bot"
    for call in (aliases.stub.Chat, aliases.stub.ChatStream):
        theirs = grpc_error(call, chat_request("beta-bot"), metadata=metadata)
        nobodys = grpc_error(call, chat_request("nope-bot"), metadata=metadata)
        assert theirs.code() == nobodys.code() == grpc.StatusCode.NOT_FOUND
        assert theirs.details() == nobodys.details().replace("nope-bot", "beta-bot")


def test_a_revoked_key_is_refused_once_the_ttl_has_passed(aliases):
    created = aliases.admin.create_api_key("alpha", "revoked by the test")
    client = sdk(aliases, created.key)
    assert {m.id for m in client.models.list().data} == {"alpha-bot", "bot"}  # works at once
    aliases.admin.revoke_api_key(created.api_key.name)

    def refused() -> bool:
        try:
            client.models.list()
        except openai.AuthenticationError as exc:
            assert exc.code == "invalid_api_key"
            return True
        return False

    # Bounded by the router's caller TTL (CALLER_TTL_SECONDS); the wait only ends a broken test.
    wait_for(refused, "the router refusing the revoked key")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="alpha-bot", messages=HELLO)
    error = grpc_error(aliases.stub.Chat, chat_request("alpha-bot"),
                       metadata=bearer(created.key))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_keys_appear_in_no_log(aliases, caplog):
    """The gateway's log (this process) and the router's (its file) never hold a key."""
    caplog.set_level(logging.DEBUG)
    for key in (*aliases.keys.values(), *WRONG_KEYS):
        post(aliases, key, {"model": "alpha-bot", "messages": HELLO})
        post(aliases, key, {"model": "beta-bot", "messages": HELLO})
    secrets_ = [*aliases.keys.values(), *WRONG_KEYS, aliases.internal_token]
    gateway_log = "\n".join(json.dumps(vars(r), default=str) for r in caplog.records)
    router_log = aliases.router.log()
    assert any(r.name == "distill.rpc" for r in caplog.records)  # the gateway's RPC lines
    for secret in secrets_:
        assert secret not in gateway_log
        assert secret not in router_log


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_only_the_internal_token_resolves_keys_or_reads_another_projects_aliases(aliases):
    """The gateway's side of it (DirectoryService), attacked with a project's own key."""
    with grpc.insecure_channel(aliases.gateway_address) as channel:
        directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        internal, alpha = bearer(aliases.internal_token), bearer(aliases.keys["alpha"])

        def resolve(key: str, metadata) -> str:
            return directory.ResolveCaller(directory_pb2.ResolveCallerRequest(
                key_sha256=digest(key)), metadata=metadata).project

        assert resolve(aliases.keys["beta"], internal) == "beta"
        for key in (aliases.internal_token, *WRONG_KEYS):
            with pytest.raises(grpc.RpcError) as unknown:
                resolve(key, internal)
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as malformed:
            directory.ResolveCaller(directory_pb2.ResolveCallerRequest(key_sha256="abc"),
                                    metadata=internal)
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "key_sha256" in malformed.value.details()
        with pytest.raises(grpc.RpcError) as denied:
            resolve(aliases.keys["beta"], alpha)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

        read = directory_pb2.GetProjectAliasRequest(project="beta", name="beta-bot")
        assert directory.GetProjectAlias(read, metadata=internal).alias.name == "beta-bot"
        with pytest.raises(grpc.RpcError) as denied:
            directory.GetProjectAlias(read, metadata=alpha)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as denied:
            directory.ListProjectAliases(directory_pb2.ListProjectAliasesRequest(
                project="beta"), metadata=alpha)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        own = directory.ListProjectAliases(directory_pb2.ListProjectAliasesRequest(
            project="alpha"), metadata=alpha)
        assert {a.name for a in own.aliases} == {"alpha-bot", "bot"}


def test_the_internal_token_acts_in_no_project_on_the_gateway(aliases):
    with pytest.raises(grpc.RpcError) as denied, \
            grpc.insecure_channel(aliases.gateway_address) as channel:
        gateway_pb2_grpc.GatewayServiceStub(channel).ListAliases(
            gateway_pb2.ListAliasesRequest(), metadata=bearer(aliases.internal_token))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("internal", [True, False], ids=["internal-token", "no-token"])
def test_a_gateway_that_needs_no_key_makes_the_router_need_none(tmp_path, internal):
    """`distill up` on loopback: no key anywhere, with the internal token (which the suite
    always makes) or without."""
    token, teacher_key = "internal-" + secrets.token_hex(16), "sk-" + secrets.token_hex(8)
    store_url = f"file://{tmp_path / 'store'}"
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=store_url,
                               db_path=tmp_path / "gateway.db",
                               internal_token=token if internal else None)
    with run_fake_provider(api_key=teacher_key) as fake, \
            serve_in_thread(settings, lambda: build_gateway(settings)) as address, \
            Distiller(address) as gateway:
        gateway.set_alias("bot", target=teacher_target(fake))
        extra = {"DISTILL_INTERNAL_TOKEN": token} if internal else {}
        router = start_module("services.router", tmp_path / "logs", env=router_environment(
            address, tmp_path, fake, teacher_key, **TEST_ROUTER_ENV, DISTILL_STORE_URL=store_url,
            **extra))
        try:
            url = f"http://127.0.0.1:{router.serving_event()['http_port']}/v1"
            for headers in ({}, {"authorization": "Bearer none"}):
                models = httpx.get(f"{url}/models", headers=headers, timeout=60,
                                   trust_env=False)
                assert models.status_code == 200, models.text
                assert [(m["id"], m["owned_by"]) for m in models.json()["data"]] == [
                    ("bot", "default")]
            assert sdk(url, "none").chat.completions.create(
                model="bot", messages=HELLO, max_tokens=8).choices[0].message.content
            with grpc.insecure_channel(router.address) as channel:
                reply = router_pb2_grpc.RouterServiceStub(channel).Chat(chat_request("bot"))
            assert reply.served_by.alias == "bot"
        finally:
            assert router.stop() == 0, router.log()[-3000:]


def test_a_gateway_refusing_the_router_is_503_not_401(aliases, tmp_path):
    """A router whose internal token the gateway does not know cannot tell whose a key is: the
    caller is told the service is unavailable, not that its key is wrong."""
    env = router_environment(aliases.gateway_address, tmp_path, aliases.fake, "sk-unused",
                             **TEST_ROUTER_ENV, DISTILL_STORE_URL=f"file://{tmp_path / 'store'}",
                             DISTILL_INTERNAL_TOKEN="not-the-internal-token")
    router = start_module("services.router", tmp_path / "logs", env=env)
    try:
        url = f"http://127.0.0.1:{router.serving_event()['http_port']}/v1"
        with pytest.raises(openai.InternalServerError) as unavailable:
            sdk(url, aliases.keys["alpha"]).models.list()
        assert unavailable.value.status_code == 503
        assert "checking the API key failed: UNAUTHENTICATED" in unavailable.value.message
    finally:
        assert router.stop() == 0, router.log()[-3000:]
