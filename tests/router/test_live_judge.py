"""Live judging through the running router: the answers of an alias with `routing.judge` are
scored off the request's path and the score lands in their traces, which progressive promotion
(the gateway's Rollouts, on the gateway's own job store) compares: a student the validator
passes but the judge scores under the teacher is rolled back; one that holds on both advances.
The queue is bounded (drops counted, the caller never waits), and an LLM judge's key goes only
to its endpoint."""

from __future__ import annotations

import json
import random
import re
import socket

import httpx
import openai
import pytest

from distill.v1 import gateway_pb2, router_pb2
from services.common.metrics import RouterMetrics
from services.common.specs.routing import progressive
from services.common.storage import LocalStore
from services.common.traces.recorder import TraceRecorder
from services.gateway.aliases import Aliases
from services.gateway.job_store import JobStore
from services.gateway.rollouts import Rollouts
from services.router.live_judge import LiveJudge
from services.router.targets import Target
from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.router_stack import STUDENT_JOB, TEACHER_KEY_ENV, Stack
from tests.fixtures.waits import wait_for
from tests.router.test_traces import teacher_alias, traces

TICKET = "TICKET-123456"  # what the teacher answers; no 135M student writes it unshown
GRADE = json.dumps({"scores": {"correctness": 8, "instruction_following": 8, "conciseness": 8},
                    "rationale": "fine"})
LENIENT = {"maxLatencySeconds": 3600}  # every answer passes the validator


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.http_url, api_key=stack.token, max_retries=0)


@pytest.fixture
def fake(stack: Stack):
    yield stack.fake
    stack.fake.configure(replies=[], model_replies={}, latency=0.0)


@pytest.fixture
def gateway_store(stack: Stack):
    """The gateway's job store, a second connection (what its Rollouts read and write)."""
    jobs = JobStore(stack.home / "gateway.db")
    yield jobs
    jobs.close()


def judge_model(base_url: str, key_env: str = TEACHER_KEY_ENV) -> dict:
    model = {"provider": "PROVIDER_OPENAI", "model": "gpt-4o", "baseUrl": base_url}
    return {**model, "apiKeyEnv": key_env} if key_env else model


def start_rollout(jobs: JobStore, alias: str):
    """What a job with `progressive` hands Rollouts.start once it passes the eval gate: the
    student as the alias's shadow, then half the traffic, then all of it."""
    job = gateway_pb2.Job(name=STUDENT_JOB, project="default", spec=gateway_pb2.DistillSpec(
        promote_alias=alias, progressive=gateway_pb2.ProgressivePromotion(
            enabled=True, window_requests=3, canary_percents=[50, 100])))
    student = gateway_pb2.AliasTarget(job=STUDENT_JOB,
                                      gguf=jobs.get_job(STUDENT_JOB).outputs.student_gguf)
    return job, progressive(job.spec.progressive), student


def ask(client: openai.OpenAI, alias: str, n: int) -> list:
    return [client.chat.completions.create(
        model=alias, max_tokens=8, messages=[{"role": "user", "content": f"Which ticket? #{i}"}])
        for i in range(n)]


def scored(stack: Stack, alias: str, version: int) -> list[dict]:
    return [line for line in traces(stack, alias) if line["served_by"]["version"] == version
            and line["judge_score"] is not None]


def settled(rollouts: Rollouts, aliases: Aliases, alias: str, version: int) -> bool:
    """Ticks the rollout (as the gateway's own loop also does) until the alias moved on."""
    rollouts.tick()
    return aliases.get(alias).version > version


def test_a_student_the_validator_passes_but_the_judge_scores_under_the_teacher_is_rolled_back(
        stack, client, fake, gateway_store):
    # A reference judge: each answer against the teacher's answer to the same request.
    fake.configure(model_replies={"gpt-4o-mini": [TICKET]})
    teacher_alias(stack, "graded", {"validator": LENIENT, "judge": {"judge": {
        "reference": {"mode": "MATCH_MODE_NORMALIZED"}}}})
    aliases = Aliases(gateway_store)
    rollouts = Rollouts(aliases, stack.store)
    job, plan, student = start_rollout(gateway_store, "graded")
    shadow = rollouts.start(job, plan, student)
    assert shadow.version == 2 and shadow.routing.judge.judge.HasField("reference")

    replies = ask(client, "graded", 3)
    assert all(r.choices[0].message.content == TICKET for r in replies)
    wait_for(lambda: len(scored(stack, "graded", 2)) == 6, what="six judged traces")
    lines = scored(stack, "graded", 2)
    teacher = [line for line in lines if not line["shadow"]]
    shadows = [line for line in lines if line["shadow"]]
    assert {line["served_by"]["model"] for line in shadows} == {STUDENT_JOB}
    assert all(line["validator"] == "passed" for line in lines)
    # The teacher's answer is its own reference; the student never writes the ticket code.
    assert [line["judge_score"] for line in teacher] == [10.0] * 3
    assert [line["judge_score"] for line in shadows] == [0.0] * 3

    wait_for(lambda: settled(rollouts, aliases, "graded", 2), what="the rollout's decision")
    back = aliases.get("graded")
    assert back.target.teacher.model == "gpt-4o-mini" and not back.routing.shadows
    assert back.target.description.startswith(f"rollback of {STUDENT_JOB}: step 1 of 3 (shadow)")
    assert "judge score 0 vs teacher 10 (x0.95 required)" in back.target.description
    metrics = stack.metrics()
    assert 'distill_router_judged_total{alias="graded",outcome="scored",version="2"} 6.0' \
        in metrics


def test_a_student_that_holds_on_validator_and_llm_judge_advances(stack, client, fake,
                                                                 gateway_store):
    # An LLM judge on the fake (another model than the teacher's), the same grade for every
    # answer: the student keeps up with the teacher.
    fake.configure(model_replies={"gpt-4o-mini": ["positive"], "gpt-4o": [GRADE]})
    teacher_alias(stack, "rated", {"validator": LENIENT, "judge": {
        "judge": {"llm": {"model": judge_model(stack.fake.openai_base_url)}}}})
    aliases = Aliases(gateway_store)
    rollouts = Rollouts(aliases, stack.store)
    job, plan, student = start_rollout(gateway_store, "rated")
    rollouts.start(job, plan, student)

    ask(client, "rated", 3)
    wait_for(lambda: len(scored(stack, "rated", 2)) == 6, what="six judged traces")
    lines = scored(stack, "rated", 2)
    assert {line["judge_score"] for line in lines} == {8.0}
    assert all(line["judge_cost_usd"] > 0 for line in lines)  # gpt-4o's registry price

    wait_for(lambda: settled(rollouts, aliases, "rated", 2), what="the rollout's decision")
    canary = aliases.get("rated")
    assert canary.routing.canary[0].percent == 50 and canary.routing.canary[0].target.job == \
        STUDENT_JOB
    assert ("validator pass rate 1 vs teacher 1 (x0.95 required); judge score 8 vs teacher 8 "
            "(x0.95 required)") in canary.target.description
    assert canary.routing.judge.judge.HasField("llm")  # the canary's answers are judged too
    spent = re.search(r'distill_router_judge_cost_usd_total\{alias="rated",version="2"\} (\S+)',
                      stack.metrics())
    assert spent and float(spent.group(1)) == pytest.approx(
        sum(line["judge_cost_usd"] for line in lines))


def test_a_full_judge_queue_drops_scores_never_the_callers_answer(stack, fake):
    """One judging at a time and no queue, against a judge server that never answers (it
    takes the connection and says nothing): the first answer waits for its score, the next two
    are written unscored and counted, and the caller gets every answer all the same."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # an allowed host: no key sent
        router = stack.another_router(DISTILL_ROUTER_JUDGE_CONCURRENCY="1",
                                      DISTILL_ROUTER_JUDGE_QUEUE="0")
        try:
            base_url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
            teacher_alias(stack, "busy", {"judge": {"judge": {"llm": {
                "model": judge_model(base_url, key_env="")}}}})
            second = openai.OpenAI(
                base_url=f"http://127.0.0.1:{router.serving_event()['http_port']}/v1",
                api_key=stack.token, max_retries=0)
            replies = ask(second, "busy", 3)
            assert all(r.choices[0].message.content for r in replies)
            wait_for(lambda: len(traces(stack, "busy")) == 2, what="the two unscored traces")
            assert [line["judge_score"] for line in traces(stack, "busy")] == [None, None]
            port = router.serving_event()["metrics_port"]
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30,
                                trust_env=False).text
            assert 'distill_router_judged_total{alias="busy",outcome="dropped",version="1"} ' \
                '2.0' in metrics
        finally:
            assert router.stop() == 0, router.log()[-3000:]
    # Stopping records what was still being judged, unscored.
    assert len(traces(stack, "busy")) == 3
    assert all(line["judge_score"] is None for line in traces(stack, "busy"))


def test_security_a_live_judge_cannot_send_a_server_key_to_another_server(stack, client, fake):
    """The endpoint rules hold for a live judge as for a teacher: an LLM judge at the caller's
    own server (an allowed host) naming the server's teacher key is refused before any
    connection; the answer is served and traced, unscored, and the failure counted."""
    with run_fake_provider() as attacker:
        teacher_alias(stack, "leaky", {"judge": {"judge": {"llm": {
            "model": judge_model(attacker.openai_base_url)}}}})
        reply = ask(client, "leaky", 1)[0]
        assert reply.choices[0].message.content
        wait_for(lambda: traces(stack, "leaky"), what="the trace")
        assert attacker.stats()["received"] == 0 and not attacker.server.keys_seen
    (line,) = traces(stack, "leaky")
    assert line["judge_score"] is None
    assert 'distill_router_judged_total{alias="leaky",outcome="failed",version="1"} 1.0' in \
        stack.metrics()
    assert stack.router_env[TEACHER_KEY_ENV] not in stack.router.log()


def test_the_sample_rate_picks_that_share_of_requests(tmp_path):
    judge = LiveJudge(TraceRecorder(LocalStore(tmp_path)), lambda: None,
                      RouterMetrics(lambda: 0, lambda: 0), concurrency=1, queue=0,
                      rng=random.Random(7))

    def target(routing: gateway_pb2.AliasRouting) -> Target:
        return Target("bot", 1, router_pb2.TARGET_KIND_TEACHER, "gpt-4o-mini", 64,
                      gateway_pb2.AliasTarget(), routing)

    def judged(rate: float | None) -> int:
        routing = gateway_pb2.AliasRouting()
        if rate is not None:
            routing.judge.judge.length.max_chars = 10
            routing.judge.sample_rate = rate
        return sum(judge.draw(target(routing), f"p{rate}") for _ in range(4000))

    assert 900 <= judged(0.25) <= 1100  # 1000 expected; a binomial sd of 27
    assert judged(0.0) == judged(1.0) == 4000  # unset: every request
    assert judged(None) == 0  # no judge
