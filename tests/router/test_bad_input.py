"""Bad input gets a clear error naming the field and the limit, with the right status, over
both the OpenAI HTTP API (OpenAI-shaped errors) and gRPC; a crashed engine fails only the
request it was answering."""

from __future__ import annotations

import json
import threading

import grpc
import httpx
import openai
import psutil
import pytest

from distill.v1 import common_pb2, router_pb2
from tests.fixtures.router_stack import STUDENT_JOB, Stack
from tests.fixtures.waits import wait_for

USER = common_pb2.ROLE_USER
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def aliases(stack: Stack) -> Stack:
    stack.gateway.set_alias("crash-bot", job=STUDENT_JOB)
    stack.set_teacher_alias("small-bot", max_tokens_limit=64)
    return stack


def post(stack: Stack, content: bytes, key: str | None = "default") -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {stack.token if key == 'default' else key}"
    return httpx.post(f"{stack.http_url}/chat/completions", content=content, headers=headers,
                      timeout=120, trust_env=False)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unknown_alias_is_404_model_not_found_and_grpc_not_found(aliases):
    client = openai.OpenAI(base_url=aliases.http_url, api_key=aliases.token, max_retries=0)
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-bot", messages=HELLO)
    assert raised.value.code == "model_not_found"
    assert "no alias named 'no-such-bot'" in raised.value.message
    for model in ("no-such-bot", "Not An Alias"):
        with pytest.raises(grpc.RpcError) as failed:
            aliases.stub.Chat(router_pb2.ChatRequest(
                model=model, messages=[common_pb2.ChatMessage(role=USER, content="hi")]),
                metadata=aliases.metadata)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND


def test_malformed_json_is_400_naming_the_problem(aliases):
    response = post(aliases, b'{"model": "small-bot", "messages": [')
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["param"] == "body"
    assert "malformed JSON" in error["message"] and "line 1" in error["message"]

    response = post(aliases, json.dumps({"model": "small-bot", "messages": [
        {"role": "robot", "content": "hi"}]}).encode())
    assert response.status_code == 400
    assert error_of(response)["param"] == "messages[0].role"


def test_body_over_the_limit_is_413(aliases):
    big = json.dumps({"model": "small-bot", "messages": [
        {"role": "user", "content": "x" * (2 * 1024 * 1024)}]}).encode()
    received = aliases.fake.stats()["received"]
    response = post(aliases, big)
    assert response.status_code == 413
    assert "over the limit of 1048576 bytes" in error_of(response)["message"]
    assert aliases.fake.stats()["received"] == received  # nothing went to the teacher


def test_max_tokens_over_the_alias_limit_is_400(aliases):
    client = openai.OpenAI(base_url=aliases.http_url, api_key=aliases.token, max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="small-bot", messages=HELLO, max_tokens=65)
    assert raised.value.param == "max_tokens"
    assert "65 is over the limit of alias 'small-bot' (64)" in raised.value.message
    with pytest.raises(grpc.RpcError) as failed:
        aliases.stub.Chat(router_pb2.ChatRequest(
            model="small-bot", messages=[common_pb2.ChatMessage(role=USER, content="hi")],
            sampling=router_pb2.Sampling(max_tokens=65)), metadata=aliases.metadata)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert client.chat.completions.create(model="small-bot", messages=HELLO, max_tokens=64)


def test_no_or_wrong_key_is_401(aliases):
    body = json.dumps({"model": "small-bot", "messages": HELLO}).encode()
    for key in (None, "wrong-key"):
        response = post(aliases, body, key=key)
        assert response.status_code == 401
        assert error_of(response)["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=aliases.http_url, api_key="wrong", max_retries=0).models.list()
    with pytest.raises(grpc.RpcError) as failed:
        aliases.stub.Chat(router_pb2.ChatRequest(model="small-bot"))
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _engine(stack: Stack) -> psutil.Process:
    (engine,) = stack.engines()
    return engine


LONG = [{"role": "user", "content": "Count from 1 to 500, separated by commas."}]


def test_engine_killed_mid_request_is_503_and_the_next_request_succeeds(aliases):
    client = openai.OpenAI(base_url=aliases.http_url, api_key=aliases.token, max_retries=0)
    client.chat.completions.create(model="crash-bot", messages=HELLO, max_tokens=4)  # warm
    engine = _engine(aliases)
    idle_cpu = sum(engine.cpu_times()[:2])
    outcome: dict = {}

    def ask() -> None:
        outcome["response"] = post(aliases, json.dumps(
            {"model": "crash-bot", "messages": LONG, "max_tokens": 1500,
             "temperature": 0}).encode())

    asking = threading.Thread(target=ask)
    asking.start()
    # The engine is answering once it has spent CPU time on it (it uses none while idle).
    wait_for(lambda: sum(engine.cpu_times()[:2]) > idle_cpu + 0.5, "the engine generating")
    engine.kill()
    asking.join(120)
    response = outcome["response"]
    assert response.status_code == 503, response.text
    assert "stopped answering mid-request" in error_of(response)["message"]

    reply = client.chat.completions.create(model="crash-bot", messages=HELLO, max_tokens=4)
    assert reply.choices[0].message.content
    assert _engine(aliases).pid != engine.pid  # a new engine process answered
    metrics = aliases.metrics()
    assert 'distill_router_requests_total{alias="crash-bot",code="UNAVAILABLE",target="student",' \
        'version="1"} 1.0' in metrics
    assert "distill_router_engine_restarts_total" in metrics
    assert "distill_router_engine_restarts_total 0.0" not in metrics


def test_engine_killed_mid_stream_ends_the_stream_unavailable(aliases):
    ask = router_pb2.ChatStreamRequest(
        model="crash-bot", messages=[common_pb2.ChatMessage(role=USER, content=LONG[0]["content"])],
        sampling=router_pb2.Sampling(max_tokens=1500, temperature=0))
    stream = aliases.stub.ChatStream(ask, metadata=aliases.metadata)
    with pytest.raises(grpc.RpcError) as failed:
        for i, part in enumerate(stream):
            assert part.delta
            if i == 0:
                _engine(aliases).kill()  # after the first piece arrived
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    again = aliases.stub.Chat(router_pb2.ChatRequest(
        model="crash-bot", messages=[common_pb2.ChatMessage(role=USER, content="hi")],
        sampling=router_pb2.Sampling(max_tokens=4)), metadata=aliases.metadata)
    assert again.content
