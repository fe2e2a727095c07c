"""Serving by alias: a student GGUF on a real engine and a teacher on the fake provider, through
the official `openai` SDK (plain and streamed) and through gRPC."""

from __future__ import annotations

import threading

import grpc
import openai
import pytest

from distill.client import DistillClientError
from distill.v1 import common_pb2, gateway_pb2, router_pb2
from tests.fixtures.router_stack import STUDENT_JOB, TEACHER_KEY_ENV, Stack
from tests.fixtures.waits import wait_for

USER = common_pb2.ROLE_USER


@pytest.fixture(scope="module")
def student(stack: Stack) -> str:
    stack.gateway.set_alias("support-bot", job=STUDENT_JOB)
    return "support-bot"


def sdk(stack: Stack, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.http_url, api_key=key or stack.token, max_retries=0)


def test_student_alias_through_the_openai_sdk_plain_and_streamed(stack, student):
    client = sdk(stack)
    reply = client.chat.completions.create(
        model=student, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24, temperature=0, seed=1)
    assert reply.model == student
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 24
    served = reply.model_extra["distill"]
    assert (served["kind"], served["model"], served["version"]) == ("student", STUDENT_JOB, 1)

    chunks = list(client.chat.completions.create(
        model=student, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24, temperature=0, seed=1, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # Greedy decoding: the streamed answer is the plain one, piece by piece.
    assert streamed == reply.choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens > 0
    assert [m.id for m in client.models.list()] == [student]
    assert len(stack.engines()) == 1  # both answers came from the one engine
    metrics = stack.metrics()
    labels = f'alias="{student}",code="OK",target="student",version="1"'
    assert f"distill_router_requests_total{{{labels}}} 2.0" in metrics
    assert "distill_router_engines_loaded 1.0" in metrics


def test_student_alias_through_grpc(stack, student):
    messages = [common_pb2.ChatMessage(role=USER, content="Name a colour.")]
    sampling = router_pb2.Sampling(max_tokens=16, temperature=0, seed=3)
    reply = stack.stub.Chat(router_pb2.ChatRequest(model=f"{student}@1", messages=messages,
                                                   sampling=sampling), metadata=stack.metadata)
    assert reply.content.strip()
    assert reply.served_by == router_pb2.ServedBy(
        alias=student, version=1, kind=router_pb2.TARGET_KIND_STUDENT, model=STUDENT_JOB)
    assert reply.usage.completion_tokens > 0 and reply.usage.latency_seconds > 0
    assert reply.usage.cost_usd == 0

    parts = list(stack.stub.ChatStream(router_pb2.ChatStreamRequest(
        model=student, messages=messages, sampling=sampling), metadata=stack.metadata))
    assert "".join(p.delta for p in parts) == reply.content
    assert parts[-1].served_by.kind == router_pb2.TARGET_KIND_STUDENT
    assert parts[-1].finish_reason == reply.finish_reason


def test_teacher_alias_goes_through_the_provider_clients(stack):
    stack.set_teacher_alias("teacher-bot")
    before = stack.fake.stats()["completed"]
    reply = sdk(stack).chat.completions.create(
        model="teacher-bot", messages=[{"role": "user", "content": "hello there"}],
        max_tokens=50)
    assert reply.choices[0].message.content == f"reply {before + 1} to: hello there"
    served = reply.model_extra["distill"]
    assert (served["kind"], served["model"]) == ("teacher", "gpt-4o-mini")
    assert served["cost_usd"] > 0  # gpt-4o-mini's price on the fake's token counts
    assert reply.usage.prompt_tokens == 5 and reply.usage.completion_tokens == 5

    # A 503 from the teacher is retried by the provider client; the caller sees the answer.
    stack.fake.push_faults({"status": 503})
    parts = list(stack.stub.ChatStream(router_pb2.ChatStreamRequest(
        model="teacher-bot", messages=[common_pb2.ChatMessage(role=USER, content="again")],
        sampling=router_pb2.Sampling(stop=[" to:"])), metadata=stack.metadata))
    assert "".join(p.delta for p in parts) == f"reply {before + 2}"  # cut at the stop sequence
    assert parts[-1].served_by.kind == router_pb2.TARGET_KIND_TEACHER
    assert parts[-1].usage.cost_usd > 0
    assert stack.fake.stats()["by_status"]["503"] >= 1


def test_a_new_alias_version_takes_traffic_and_old_versions_stay_callable(stack, student):
    alias = stack.set_teacher_alias("moving-bot")
    ask = [common_pb2.ChatMessage(role=USER, content="who are you")]
    first = stack.stub.Chat(router_pb2.ChatRequest(model="moving-bot", messages=ask),
                            metadata=stack.metadata)
    assert first.served_by.kind == router_pb2.TARGET_KIND_TEACHER
    stack.gateway.set_alias("moving-bot", job=STUDENT_JOB, expected_version=alias.version)

    def on_the_new_version() -> router_pb2.ChatResponse | None:
        # Until the new version is downloaded and warm, the old one answers (never an error).
        reply = stack.stub.Chat(router_pb2.ChatRequest(
            model="moving-bot", messages=ask, sampling=router_pb2.Sampling(max_tokens=8)),
            metadata=stack.metadata)
        return reply if reply.served_by.version == 2 else None

    now = wait_for(on_the_new_version, "version 2 of moving-bot to answer")
    assert now.served_by.kind == router_pb2.TARGET_KIND_STUDENT
    pinned = stack.stub.Chat(router_pb2.ChatRequest(model="moving-bot@1", messages=ask),
                             metadata=stack.metadata)
    assert (pinned.served_by.kind, pinned.served_by.version) == (
        router_pb2.TARGET_KIND_TEACHER, 1)
    with pytest.raises(grpc.RpcError) as raised:
        stack.stub.Chat(router_pb2.ChatRequest(model="moving-bot@9", messages=ask),
                        metadata=stack.metadata)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no version 9" in raised.value.details()


def test_upstream_alias_forwards_to_an_openai_compatible_server(stack):
    """An alias may point at an external server (vLLM, llama-server, Ollama); the fake provider
    stands in for it, with its key read from the variable the alias names."""
    target = gateway_pb2.AliasTarget(upstream=gateway_pb2.Upstream(
        base_url=stack.fake.openai_base_url, model="lora-student-7", api_key_env=TEACHER_KEY_ENV))
    stack.gateway.set_alias("upstream-bot", target=target)
    reply = stack.stub.Chat(router_pb2.ChatRequest(
        model="upstream-bot", messages=[common_pb2.ChatMessage(role=USER, content="ping")]),
        metadata=stack.metadata)
    assert reply.content.endswith("to: ping")
    assert reply.served_by == router_pb2.ServedBy(
        alias="upstream-bot", version=1, kind=router_pb2.TARGET_KIND_UPSTREAM,
        model="lora-student-7")
    assert reply.usage.prompt_tokens == 4 and reply.usage.completion_tokens > 0


def test_set_alias_refuses_an_upstream_without_url_or_model(stack):
    for upstream, field in ((gateway_pb2.Upstream(base_url="ftp://x", model="m"), "base_url"),
                            (gateway_pb2.Upstream(base_url="http://127.0.0.1:9/v1"), "model")):
        with pytest.raises(DistillClientError) as raised:
            stack.gateway.set_alias("bad-upstream",
                                    target=gateway_pb2.AliasTarget(upstream=upstream))
        assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert f"target.upstream.{field}" in raised.value.message


def test_swap_and_rollback_under_load_fail_no_request(stack, student):
    """Eight callers keep asking while SetAlias moves the alias to the student and RollbackAlias
    moves it back: no request fails, and each new version takes traffic."""
    alias = stack.set_teacher_alias("swap-bot")
    ask = router_pb2.ChatRequest(model="swap-bot", sampling=router_pb2.Sampling(max_tokens=4),
                                 messages=[common_pb2.ChatMessage(role=USER, content="hi")])
    served: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def caller() -> None:
        while not stop.is_set():
            try:
                served.append(stack.stub.Chat(ask, metadata=stack.metadata,
                                              timeout=120).served_by.version)
            except grpc.RpcError as exc:
                failures.append(f"{exc.code().name}: {exc.details()}")

    callers = [threading.Thread(target=caller) for _ in range(8)]
    for thread in callers:
        thread.start()
    try:
        wait_for(lambda: len(served) >= 8 or failures, "answers from version 1")
        stack.gateway.set_alias("swap-bot", job=STUDENT_JOB, expected_version=alias.version)
        wait_for(lambda: 2 in served or failures, "version 2 answering")
        stack.gateway.rollback_alias("swap-bot")  # version 3: version 1's teacher again
        wait_for(lambda: 3 in served or failures, "version 3 answering")
        count = len(served)
        wait_for(lambda: len(served) >= count + 8 or failures, "more answers after the swaps")
    finally:
        stop.set()
        for thread in callers:
            thread.join(120)
    assert failures == []
    assert {1, 2, 3} <= set(served)
