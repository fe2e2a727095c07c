"""Trace capture through the running router: every answer is recorded off the request's path as
a dataset line, with its tags; a caller can opt out, an alias can turn capture off and redact."""

from __future__ import annotations

import json

import openai
import pytest

from distill.v1 import common_pb2, gateway_pb2, router_pb2
from services.common.traces import layout
from tests.fixtures.router_stack import STUDENT_JOB, TEACHER_KEY_ENV, Stack
from tests.fixtures.waits import wait_for


def traces(stack: Stack, alias: str) -> list[dict]:
    keys = sorted(stack.store.list(layout.alias_prefix("default", alias)))
    return [json.loads(line) for key in keys for line in stack.store.get_bytes(key).splitlines()]


def teacher_alias(stack: Stack, name: str, routing: dict | None = None) -> None:
    target = gateway_pb2.AliasTarget()
    target.teacher.CopyFrom(common_pb2.ModelSpec(
        provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
        base_url=stack.fake.openai_base_url, api_key_env=TEACHER_KEY_ENV))
    stack.gateway.set_alias(name, target=target, routing=routing)


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.http_url, api_key=stack.token, max_retries=0)


def test_answers_are_recorded_with_tags_and_an_opted_out_request_is_not(stack, client):
    teacher_alias(stack, "traced")
    client.chat.completions.create(model="traced", metadata={"team": "billing"},
                                   messages=[{"role": "user", "content": "first question"}])
    chunks = list(client.chat.completions.create(
        model="traced", stream=True, messages=[{"role": "user", "content": "second question"}]))
    client.chat.completions.create(model="traced", extra_headers={"x-distill-trace": "off"},
                                   messages=[{"role": "user", "content": "private question"}])
    stack.stub.Chat(router_pb2.ChatRequest(
        model="traced", tags={"via": "grpc"}, messages=[common_pb2.ChatMessage(
            role=common_pb2.ROLE_USER, content="third question")]), metadata=stack.metadata)
    stack.stub.Chat(router_pb2.ChatRequest(
        model="traced", no_trace=True, messages=[common_pb2.ChatMessage(
            role=common_pb2.ROLE_USER, content="private grpc question")]),
        metadata=stack.metadata)

    wait_for(lambda: len(traces(stack, "traced")) >= 3, what="three traces written")
    lines = traces(stack, "traced")
    asked = sorted(line["messages"][-1]["content"] for line in lines)
    assert asked == ["first question", "second question", "third question"]  # no private ones
    first = next(line for line in lines if line["messages"][-1]["content"] == "first question")
    assert first["tags"] == {"team": "billing"} and first["answer"]
    assert first["served_by"] == {"alias": "traced", "version": 1, "target": "teacher",
                                  "model": "gpt-4o-mini"}
    assert first["tokens"]["completion"] > 0 and first["latency_seconds"] > 0
    streamed = next(line for line in lines if line["messages"][-1]["content"] == "second question")
    assert streamed["answer"] == "".join(c.choices[0].delta.content or "" for c in chunks
                                         if c.choices)
    assert 'distill_router_traces_total{outcome="written"}' in stack.metrics()


def test_an_alias_can_redact_or_turn_capture_off(stack, client):
    teacher_alias(stack, "redacted", {"capture": {"redact": ["emails"],
                                                  "redactPatterns": [r"ACCT-\d+"]}})
    teacher_alias(stack, "unrecorded", {"capture": {"disabled": True}})
    client.chat.completions.create(model="redacted", messages=[
        {"role": "user", "content": "mail eve@corp.example about ACCT-4411"}])
    client.chat.completions.create(model="unrecorded", messages=[
        {"role": "user", "content": "never written"}])
    client.chat.completions.create(model="redacted", messages=[
        {"role": "user", "content": "after the unrecorded one"}])
    # Batches are written in the order traces were recorded: once the last request's trace is
    # in the store, an "unrecorded" trace would be too.
    wait_for(lambda: len(traces(stack, "redacted")) == 2, what="both redacted traces")
    asked = {line["messages"][-1]["content"] for line in traces(stack, "redacted")}
    assert asked == {"mail [redacted:emails] about [redacted]", "after the unrecorded one"}
    raw = b"".join(stack.store.get_bytes(k) for k in stack.store.list("traces/"))
    assert b"eve@corp.example" not in raw and b"ACCT-4411" not in raw
    assert traces(stack, "unrecorded") == [] and b"never written" not in raw


def test_bad_tags_are_refused_naming_the_field(stack, client):
    teacher_alias(stack, "tagged")
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="tagged", metadata={f"k{i}": "v" for i in range(17)},
                                       messages=[{"role": "user", "content": "hi"}])
    assert "metadata: at most 16 keys" in str(raised.value)


def test_a_canary_split_sends_each_user_to_one_target_and_traces_say_which(stack, client):
    teacher_alias(stack, "split", {"canary": [{"percent": 50, "target": {"teacher": {
        "provider": "PROVIDER_OPENAI", "model": "gpt-4o", "baseUrl": stack.fake.openai_base_url,
        "apiKeyEnv": TEACHER_KEY_ENV}}}]})
    served = {}
    for user in ("ann", "bob", "cid", "dee", "eve", "fay"):
        for _ in range(2):  # the same user twice: the same target both times
            reply = client.chat.completions.create(
                model="split", user=user, messages=[{"role": "user", "content": f"hi {user}"}])
            served.setdefault(user, set()).add(reply.model_extra["distill"]["model"])
    assert all(len(models) == 1 for models in served.values()), served
    assert set().union(*served.values()) == {"gpt-4o", "gpt-4o-mini"}  # both took traffic
    wait_for(lambda: len(traces(stack, "split")) == 12, what="twelve traces")
    by_user = {line["messages"][-1]["content"][3:]: line["served_by"]["model"]
               for line in traces(stack, "split")}
    assert by_user == {user: next(iter(models)) for user, models in served.items()}


def test_a_student_answer_that_fails_the_validator_is_answered_by_the_teacher(stack, client):
    teacher = {"provider": "PROVIDER_OPENAI", "model": "gpt-4o-mini",
               "baseUrl": stack.fake.openai_base_url, "apiKeyEnv": TEACHER_KEY_ENV}
    # No 135M model writes a ticket code it was never shown: the student fails every time.
    stack.gateway.set_alias("checked", job=STUDENT_JOB, routing={"validator": {
        "judge": {"regex": {"pattern": r"TICKET-\d{6}", "fullMatch": True}},
        "fallback": teacher}})
    stack.gateway.set_alias("lenient", job=STUDENT_JOB, routing={"validator": {
        "maxLatencySeconds": 3600}})
    question = [{"role": "user", "content": "Which ticket is this?"}]
    reply = client.chat.completions.create(model="checked", messages=question, max_tokens=8)
    assert reply.model_extra["distill"]["kind"] == "teacher"
    chunks = list(client.chat.completions.create(model="checked", messages=question,
                                                 max_tokens=8, stream=True))
    # checked whole, then sent in one piece (its traces below say the teacher answered it)
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 1
    kept = client.chat.completions.create(model="lenient", messages=question, max_tokens=8)
    assert kept.model_extra["distill"]["kind"] == "student"

    wait_for(lambda: len(traces(stack, "checked")) == 4 and traces(stack, "lenient"),
             what="the traces of both aliases")
    lines = traces(stack, "checked")
    students = [line for line in lines if line["served_by"]["target"] == "student"]
    teachers = [line for line in lines if line["served_by"]["target"] == "teacher"]
    assert [s["validator"] for s in students] == ["failed", "failed"]
    assert all(t["fallback_reason"].startswith("regex /TICKET") for t in teachers)
    assert len(teachers) == 2 and all(t["validator"] is None for t in teachers)
    assert traces(stack, "lenient")[0]["validator"] == "passed"
    assert 'distill_router_fallbacks_total{alias="checked",version="1"} 2.0' in stack.metrics()
    # The next dataset can take exactly the requests the teacher caught.
    caught = stack.gateway.dataset_from_traces("checked", fallbacks_only=True)
    assert caught.prompts == 1 and caught.traces_matched == 2  # one question, asked twice


def test_a_shadow_answers_too_and_is_traced_but_never_returned(stack, client):
    teacher_alias(stack, "shadowed", {"shadows": [{"job": STUDENT_JOB}],
                                      "validator": {"maxLatencySeconds": 3600}})
    reply = client.chat.completions.create(
        model="shadowed", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert reply.model_extra["distill"]["kind"] == "teacher"
    wait_for(lambda: len(traces(stack, "shadowed")) == 2, what="the answer's and the shadow's")
    by_target = {line["served_by"]["target"]: line for line in traces(stack, "shadowed")}
    assert by_target["teacher"]["shadow"] is False and by_target["student"]["shadow"] is True
    assert by_target["student"]["served_by"]["model"] == STUDENT_JOB
    assert by_target["teacher"]["answer"] == reply.choices[0].message.content
    # both checked by the validator: the comparison progressive promotion reads
    assert by_target["teacher"]["validator"] == by_target["student"]["validator"] == "passed"
