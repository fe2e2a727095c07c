"""The LLM judge over gRPC against the fake OpenAI-compatible server: scores, usage, and parse
failures recorded as judge errors (never a silent default score)."""

from __future__ import annotations

import json

import grpc
import pytest

from distill.v1 import common_pb2, judge_pb2, judge_pb2_grpc
from services.common.providers import Limits, RetryPolicy
from services.common.server import Service
from services.common.storage import open_store
from services.judge.server import JudgeService, project_models
from services.judge.settings import JudgeSettings
from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.inprocess import serve_in_thread
from tests.judge.test_service import group

KEY_ENV = "FAKE_JUDGE_API_KEY"
GOOD = json.dumps({"scores": {"correctness": 9, "instruction_following": 7, "conciseness": 10},
                   "rationale": "right"})


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-fake-judge-key")
    store = open_store(f"file://{tmp_path / 'store'}")
    with run_fake_provider() as fake:
        open_models = project_models(store, Limits(max_concurrency=8, max_retries=2),
                                     RetryPolicy(2, base_delay=0.01, max_delay=0.05),
                                     fake.policy(KEY_ENV))
        servicer = JudgeService(store, open_models, max_concurrent_groups=4)
        settings = JudgeSettings(port=0, grace_seconds=0)
        with serve_in_thread(settings, [Service.of(judge_pb2, judge_pb2_grpc, servicer)]) as addr:
            yield addr, fake


def run(address, fake, groups, max_parse_retries=2, project="", run_id=""):
    model = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                 base_url=fake.openai_base_url, api_key_env=KEY_ENV)
    spec = common_pb2.JudgeSpec(llm=common_pb2.LlmJudge(model=model,
                                                        max_parse_retries=max_parse_retries))
    requests = [judge_pb2.JudgeRequest(config=judge_pb2.JudgeConfig(judge=spec, top_k=1,
                                                                     project=project,
                                                                     run_id=run_id)),
                *(judge_pb2.JudgeRequest(group=g) for g in groups)]
    with grpc.insecure_channel(address) as channel:
        return list(judge_pb2_grpc.JudgeServiceStub(channel).Judge(iter(requests), timeout=60))


def test_llm_judge_scores_through_the_provider(setup):
    address, fake = setup
    fake.configure(replies=[GOOD])
    responses = run(address, fake, [group(0, ["a", "b"], "a")])
    judged, summary = responses[0].group, responses[1].summary
    assert [c.score for c in judged.candidates] == [pytest.approx(0.6 * 9 + 0.3 * 7 + 1.0)] * 2
    assert {c.name for c in judged.candidates[0].criteria} == {
        "correctness", "instruction_following", "conciseness"}
    assert judged.usage.requests == 2 and judged.usage.input_tokens > 0
    assert summary.statistics.usage.cost_usd > 0  # gpt-4o-mini's price applies
    assert fake.stats()["completed"] == 2


def test_a_projects_cached_verdicts_are_never_served_to_another(setup):
    """The judge's calls are cached per project, as the generator's are: a verdict one project
    paid for is served again to it, and never to another project, which pays for its own."""
    address, fake = setup
    fake.configure(replies=[GOOD])
    groups = [group(0, ["a", "b"], "a")]
    first = run(address, fake, groups, project="alpha")
    assert fake.stats()["completed"] == 2
    again = run(address, fake, groups, project="alpha")
    assert fake.stats()["completed"] == 2  # from alpha's cache
    assert [c.score for c in again[0].group.candidates] == [
        c.score for c in first[0].group.candidates]
    run(address, fake, groups, project="beta")
    assert fake.stats()["completed"] == 4  # beta paid for its own
    run(address, fake, groups)  # no project: the default one's, not alpha's or beta's
    assert fake.stats()["completed"] == 6


def test_a_cached_verdict_names_the_run_and_prompt_that_paid_for_it(setup):
    """What lets the gateway charge a verdict an earlier run of its own paid for but never
    delivered (services/gateway/stage_runs.py): the cache entry names its payer."""
    address, fake = setup
    fake.configure(replies=[GOOD])
    first = run(address, fake, [group(0, ["a", "b"], "a")], run_id="run-a")[0].group
    assert not first.cached_calls and first.usage.cost_usd > 0
    # A duplicate of line-0 under another id asks the same questions: run-a's entries answer it.
    duplicate = group(0, ["a", "b"], "a")
    duplicate.prompt.id = "line-0-again"
    again = run(address, fake, [group(0, ["a", "b"], "a"), duplicate], run_id="run-b")
    assert fake.stats()["completed"] == 2  # no new calls
    for judged in (r.group for r in again if r.HasField("group")):
        assert (judged.usage.requests, judged.usage.cached_requests) == (2, 2)
        assert judged.usage.cost_usd == 0
        assert [(c.run_id, c.prompt_id) for c in judged.cached_calls] == [("run-a", "line-0")] * 2
        assert len({c.call for c in judged.cached_calls}) == 2  # one key per candidate
        assert sum(c.usage.cost_usd for c in judged.cached_calls) == pytest.approx(
            first.usage.cost_usd)
    with pytest.raises(grpc.RpcError) as raised:
        run(address, fake, [group(0, ["a"], "a")], run_id="../run")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.run_id" in raised.value.details()


def test_a_project_name_that_is_not_one_is_refused(setup):
    address, fake = setup
    with pytest.raises(grpc.RpcError) as raised:
        run(address, fake, [group(0, ["a"], "a")], project="../alpha")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.project" in raised.value.details()
    assert fake.stats()["completed"] == 0


def test_unparseable_replies_are_retried_then_recorded_as_judge_errors(setup):
    address, fake = setup
    fake.configure(replies=["I'd give it a 7", '{"scores": {"correctness": "high"}}'])
    responses = run(address, fake, [group(0, ["a", "b"], "a")], max_parse_retries=2)
    judged, stats = responses[0].group, responses[1].summary.statistics
    assert all(c.verdict == judge_pb2.VERDICT_JUDGE_ERROR for c in judged.candidates)
    assert all(not c.HasField("score") for c in judged.candidates)
    assert all("did not parse after 3 tries" in c.judge_error for c in judged.candidates)
    assert judged.dropped and "no candidate could be scored" in judged.drop_reason
    assert stats.judge_errors == 2 and stats.candidates_scored == 0
    assert fake.stats()["completed"] == 6  # 2 candidates x (1 + 2 retries)


def test_a_rejected_api_key_ends_the_stream_with_its_status(setup):
    address, fake = setup
    fake.configure(api_key="sk-the-right-one")
    with pytest.raises(grpc.RpcError) as raised:
        run(address, fake, [group(0, ["a"], "a")])
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "sk-fake-judge-key" not in raised.value.details()
