"""The flywheel end to end (issue 22), on the whole suite: an alias on the teacher takes traffic
through the router, the traces become a dataset, a SmolLM2 student is distilled from it and
promoted step by step on live traffic (shadow, 50 % canary, all of it). In a second run the
alias's validator wants the word the teacher now says ("negative") and the student learned
another ("positive"): the teacher catches every answer the student gives, the misses are
captured as fallbacks, and the alias rolls back."""

from __future__ import annotations

import openai
import pytest

from distill.client import DistillClientError
from distill.v1 import common_pb2, gateway_pb2
from tests.e2e.conftest import SMOLLM2_TRAINING, TEACHER_KEY_ENV
from tests.e2e.test_pipeline import wait_for
from tests.fixtures import waits

State = gateway_pb2


def teacher(suite) -> dict:
    return {"provider": "PROVIDER_OPENAI", "model": "gpt-4o-mini",
            "baseUrl": suite.fake.openai_base_url, "apiKeyEnv": TEACHER_KEY_ENV, "maxTokens": 8}


def answered(router: openai.OpenAI, alias: str, user: str) -> dict:
    """The user's review, answered greedily: who answered (`kind`), at which `version`."""
    return router.chat.completions.create(
        model=alias, user=f"user-{user}", max_tokens=8, temperature=0,
        messages=[{"role": "user", "content": f"Review {user}: I loved it. Sentiment?"}],
    ).model_extra["distill"]


def ask(router: openai.OpenAI, alias: str, users: range) -> list[str]:
    return [answered(router, alias, str(i))["kind"] for i in users]


def serving(router: openai.OpenAI, alias: gateway_pb2.Alias) -> None:
    """Waits until the router answers at the alias's version: it keeps the one it has until
    the new version's student is warm, so the gateway's word alone does not say who answers."""
    waits.wait_for(lambda: answered(router, alias.name, "probe")["version"] >= alias.version,
                   f"the router to answer {alias.name} at version {alias.version}", interval=1)


def traced(suite, alias: str, count: int, **filters) -> None:
    """Waits until the router has written `count` traces of `alias` that pass `filters` (by
    default: those the teacher served)."""
    filters = filters or {"targets": ["teacher"]}

    def written() -> bool:
        try:
            return suite.client.dataset_from_traces(
                alias, keep_duplicates=True, **filters).traces_matched >= count
        except DistillClientError:  # none written yet
            return False
    waits.wait_for(written, f"{count} traces of {alias} ({filters})")


def distill_from_traces(suite, alias: str, promote: str, progressive: dict):
    from services.common.models import prepare_smollm2
    from tests.fixtures.tiny_llama import shared_cache_dir

    data = suite.client.dataset_from_traces(alias, targets=["teacher"],
                                            answers_as_reference=True)
    # The teacher samples varied answers, as test_pipeline's does: a student trained on one
    # repeated answer learns to repeat it without stopping, which the export's smoke test refuses.
    # The label judge keeps those that say the traced answer ("positive", "Positive!").
    suite.fake.configure(replies=["positive", "negative", "Positive!", "meh"])
    assert data.prompts >= 6, data
    spec = suite.client.spec(
        dataset=data.dataset, teacher=common_pb2.ModelSpec(**{
            "provider": common_pb2.PROVIDER_OPENAI, "model": "gpt-4o-mini",
            "base_url": suite.fake.openai_base_url, "api_key_env": TEACHER_KEY_ENV,
            "max_tokens": 8}),
        student=str(prepare_smollm2(shared_cache_dir())), n_samples=4, top_k=2, min_score=5,
        judge=common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
            mode=common_pb2.MATCH_MODE_LABEL)),
        # A few steps: the loop is under test, not the student's skill; they teach the answer
        # and to stop after it, never "negative".
        training={**SMOLLM2_TRAINING, "batch_size": 2, "max_seq_length": 64,
                  "checkpoint_interval": 1},
        export={"quantizations": ["QUANTIZATION_TYPE_Q8_0"], "smokeMaxTokens": 256},
        eval={"holdoutFraction": 0}, promote_alias=promote, progressive=progressive)
    job = suite.client.distill(spec)
    return wait_for(suite, job.name, {State.JOB_STATE_SUCCEEDED}, timeout=900)


def alias_reason(suite, alias: str, contains: str, timeout: float = 300) -> gateway_pb2.Alias:
    def reached() -> gateway_pb2.Alias | None:
        current = suite.client.get_alias(alias)
        return current if contains in current.target.description else None
    return waits.wait_for(reached, lambda: f"alias {alias} to say {contains!r}: "
                          f"{suite.client.get_alias(alias)}\n{suite.logs()}", timeout)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_traffic_becomes_a_student_that_earns_the_alias_or_is_rolled_back(suite):
    suite.fake.configure(replies=["positive"])
    router = openai.OpenAI(base_url=suite.router_url(), api_key="unused", max_retries=0)

    # 1. The app calls an alias on the teacher; every answer is recorded.
    suite.client.set_alias("reviews", target=gateway_pb2.AliasTarget(
        teacher=common_pb2.ModelSpec(**{k: v for k, v in {
            "provider": common_pb2.PROVIDER_OPENAI, "model": "gpt-4o-mini",
            "base_url": suite.fake.openai_base_url, "api_key_env": TEACHER_KEY_ENV}.items()})),
        routing={"validator": {"maxLatencySeconds": 3600}})
    assert ask(router, "reviews", range(8)) == ["teacher"] * 8
    traced(suite, "reviews", 8)

    # 2. A dataset from the traces, a student from the dataset, promoted step by step.
    job = distill_from_traces(suite, "reviews", "reviews", {
        "enabled": True, "windowRequests": 3, "canaryPercents": [50, 100]})
    suite.fake.configure(replies=["positive"])
    shadow = suite.client.get_alias("reviews")
    assert job.promoted_alias_version == shadow.version
    assert [t.job for t in shadow.routing.shadows] == [job.name]
    serving(router, shadow)
    # Shadows never answer (the step may advance while we ask: only the shadow's answers count).
    at_shadow = [a["kind"] for i in range(100, 104)
                 if (a := answered(router, "reviews", str(i)))["version"] == shadow.version]
    assert at_shadow and set(at_shadow) == {"teacher"}
    canary = alias_reason(suite, "reviews", "(50 % canary)")
    assert canary.routing.canary[0].percent == 50
    serving(router, canary)
    served = ask(router, "reviews", range(200, 216))
    assert {"student", "teacher"} <= set(served)
    full = alias_reason(suite, "reviews", "(100 % canary)")
    assert full.target.job == job.name and not full.routing.canary
    serving(router, full)
    assert ask(router, "reviews", range(300, 302)) == ["student"] * 2

    # 3. A second run: the alias wants exactly "negative", which the teacher now says; the
    # student is distilled from the "positive" traces again. Every answer it gives fails the
    # validator and is answered by the teacher (a fallback), and the alias rolls back.
    suite.fake.configure(replies=["negative"])
    suite.client.set_alias("labels", target=gateway_pb2.AliasTarget(
        teacher=common_pb2.ModelSpec(**{
            "provider": common_pb2.PROVIDER_OPENAI, "model": "gpt-4o-mini",
            "base_url": suite.fake.openai_base_url, "api_key_env": TEACHER_KEY_ENV})),
        routing={"validator": {"judge": {"regex": {"pattern": "negative", "fullMatch": True}},
                               "fallback": teacher(suite)}})
    assert ask(router, "labels", range(8)) == ["teacher"] * 8
    second = distill_from_traces(suite, "reviews", "labels", {
        "enabled": True, "skipShadow": True, "windowRequests": 3, "canaryPercents": [50, 100]})
    before = suite.client.get_alias("labels")
    assert before.routing.canary[0].target.job == second.name
    suite.fake.configure(replies=["negative"])
    serving(router, before)
    ask(router, "labels", range(400, 416))  # the canary's answers fail: the teacher answers
    back = alias_reason(suite, "labels", "rollback of")
    assert back.target.teacher.model == "gpt-4o-mini" and not back.routing.canary
    assert "validator pass rate 0 vs teacher 1" in back.target.description
    # The misses, ready for the next dataset (a fallback's trace may be a batch behind its miss).
    traced(suite, "labels", 3, fallbacks_only=True)
