"""Progressive promotion end to end in the gateway: shadow, canary, all traffic, each step an
alias version with its reason; rollback when the student falls below; a hand change wins."""

from __future__ import annotations

import asyncio

import pytest

from distill.v1 import common_pb2, gateway_pb2
from services.common import errors
from services.common.specs.routing import progressive
from services.common.storage import LocalStore
from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace
from services.gateway.aliases import Aliases
from services.gateway.job_store import JobStore
from services.gateway.rollouts import Rollouts
from tests.fixtures import waits

JOB = "jobs/0123456789abcdef"
VALIDATOR = gateway_pb2.AliasValidator(labels=["positive", "negative"])
JUDGE = gateway_pb2.LiveJudge(judge=common_pb2.JudgeSpec(llm=common_pb2.LlmJudge()),
                              sample_rate=0.5)


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_720_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path):
    store = JobStore(tmp_path / "g.db")
    spec = gateway_pb2.DistillSpec(
        promote_alias="bot", progressive=gateway_pb2.ProgressivePromotion(
            enabled=True, window_requests=5, canary_percents=[50, 100]))
    store.create_job(gateway_pb2.Job(name=JOB, state=gateway_pb2.JOB_STATE_SUCCEEDED, spec=spec,
                                     project="default"))
    aliases = Aliases(store)
    aliases.set("bot", gateway_pb2.AliasTarget(teacher=common_pb2.ModelSpec(model="gpt-4o-mini")),
                0, routing=gateway_pb2.AliasRouting(validator=VALIDATOR, judge=JUDGE))
    clock = Clock()
    artifacts = LocalStore(tmp_path / "store")
    return store, aliases, Rollouts(aliases, artifacts, clock=clock), artifacts, clock


def traffic(artifacts, clock, student_passes: int, student_fails: int = 0,
            scores: tuple[float | None, float | None] = (None, None)) -> None:
    """What the router would record: answers from both sides, validated (and with `scores`,
    the live judge's (teacher, student) scores), after the step began."""
    recorder = TraceRecorder(artifacts)
    outcomes = ["passed"] * student_passes + ["failed"] * student_fails
    for i, outcome in enumerate(outcomes):
        clock.now += 1
        for (model, target, result), score in zip((("gpt-4o-mini", "teacher", "passed"),
                                                   (JOB, "student", outcome)), scores,
                                                  strict=True):
            recorder.record(Trace(project="default", served_by=ServedBy("bot", 2, target, model),
                                  messages=(("user", f"q{i}"),), answer="positive",
                                  created_at=clock.now, validator=result, judge_score=score))
    asyncio.run(recorder.flush())
    clock.now += 1


def start(parts):
    store, _, rollouts, _, _ = parts
    job = store.get_job(JOB)
    return rollouts.start(job, progressive(job.spec.progressive),
                          gateway_pb2.AliasTarget(job=JOB))


def test_a_student_that_keeps_up_goes_shadow_then_canary_then_all_traffic(parts):
    store, aliases, rollouts, artifacts, clock = parts
    shadow = start(parts)
    assert shadow.version == 2 and shadow.target.teacher.model == "gpt-4o-mini"
    assert [t.job for t in shadow.routing.shadows] == [JOB]
    assert shadow.routing.validator == VALIDATOR  # the incumbent's validator stays
    assert shadow.routing.judge == JUDGE  # and its live judge
    assert "step 1 of 3 (shadow)" in shadow.target.description

    traffic(artifacts, clock, student_passes=4)
    ((_, held),) = rollouts.tick()
    assert held.action == "hold" and "student 4, teacher 4" in held.reason
    traffic(artifacts, clock, student_passes=5)  # a new window of 5 (counted since the step)
    ((_, advanced),) = rollouts.tick()
    assert advanced.action == "advance"
    canary = aliases.get("bot")
    assert canary.version == 3 and canary.routing.canary[0].percent == 50
    assert canary.routing.canary[0].target.job == JOB and not canary.routing.shadows
    assert "step 2 of 3 (50 % canary): validator pass rate 1 vs teacher 1" in \
        canary.target.description

    traffic(artifacts, clock, student_passes=5)
    ((_, done),) = rollouts.tick()
    final = aliases.get("bot")
    assert done.action == "done" and final.version == 4 and final.target.job == JOB
    assert not final.routing.canary and final.routing.validator == VALIDATOR
    assert store.rollouts() == [] and rollouts.tick() == []


def test_a_student_below_the_teacher_is_rolled_back_to_what_the_alias_served(parts):
    store, aliases, rollouts, artifacts, clock = parts
    start(parts)
    traffic(artifacts, clock, student_passes=3, student_fails=2)  # 60 % vs the teacher's 100 %
    ((_, decision),) = rollouts.tick()
    back = aliases.get("bot")
    assert decision.action == "rollback"
    assert back.version == 3 and back.target.teacher.model == "gpt-4o-mini"
    assert back.routing == gateway_pb2.AliasRouting(validator=VALIDATOR, judge=JUDGE)
    assert back.target.description.startswith(f"rollback of {JOB}: step 1 of 3 (shadow): rolled "
                                              "back: validator pass rate 0.6 vs teacher 1")
    assert store.rollouts() == []


def test_a_student_the_validator_passes_but_the_judge_scores_below_the_teacher_rolls_back(parts):
    store, aliases, rollouts, artifacts, clock = parts
    start(parts)
    # Every answer passes the validator; the judge gives the student 7.5, the teacher 8.5:
    # 7.5 < 8.5 x 0.95 = 8.075.
    traffic(artifacts, clock, student_passes=5, scores=(8.5, 7.5))
    ((_, decision),) = rollouts.tick()
    back = aliases.get("bot")
    assert decision.action == "rollback" and back.target.teacher.model == "gpt-4o-mini"
    assert "judge score 7.5 vs teacher 8.5 (x0.95 required)" in back.target.description
    assert back.routing == gateway_pb2.AliasRouting(validator=VALIDATOR, judge=JUDGE)
    assert store.rollouts() == []


def test_a_student_that_holds_on_both_measures_advances(parts):
    store, aliases, rollouts, artifacts, clock = parts
    start(parts)
    traffic(artifacts, clock, student_passes=5, scores=(8.5, 8.1))  # 8.1 >= 8.075
    ((_, decision),) = rollouts.tick()
    canary = aliases.get("bot")
    assert decision.action == "advance" and canary.routing.canary[0].target.job == JOB
    assert ("validator pass rate 1 vs teacher 1 (x0.95 required); judge score 8.1 vs teacher "
            "8.5 (x0.95 required) over the last 5 requests") in canary.target.description
    assert canary.routing.judge == JUDGE  # the canary's answers are judged too
    assert len(store.rollouts()) == 1


def test_why_a_rollout_holds_is_logged_once_per_reason(parts, caplog):
    _, _, rollouts, artifacts, clock = parts
    start(parts)
    caplog.set_level("INFO", logger="distill.gateway")
    rollouts.tick()
    rollouts.tick()  # the same reason: not said again
    traffic(artifacts, clock, student_passes=2)
    rollouts.tick()
    said = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(said) == 2 and "(student 0, teacher 0)" in said[0], said
    assert "(student 2, teacher 2)" in said[1]


def test_a_check_that_fails_holds_the_rollout_and_the_next_one_decides(parts, monkeypatch):
    store, aliases, rollouts, artifacts, clock = parts
    start(parts)
    traffic(artifacts, clock, student_passes=3, student_fails=2)
    listed = artifacts.list

    def unreachable(prefix):
        raise errors.Unavailable("the store is down")

    monkeypatch.setattr(artifacts, "list", unreachable)
    assert rollouts.tick() == [] and len(store.rollouts()) == 1  # held, not lost
    monkeypatch.setattr(artifacts, "list", listed)
    ((_, decision),) = rollouts.tick()
    assert decision.action == "rollback" and aliases.get("bot").version == 3


def test_the_check_loop_outlives_a_failed_check(parts, monkeypatch):
    store, aliases, rollouts, artifacts, clock = parts
    start(parts)
    traffic(artifacts, clock, student_passes=3, student_fails=2)
    calls = []

    def tick():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the job store is locked")
        return real_tick()

    real_tick = rollouts.tick
    monkeypatch.setattr(rollouts, "tick", tick)

    async def until_rolled_back():
        loop = asyncio.create_task(rollouts.run(0))
        try:
            await waits.async_wait_for(lambda: aliases.get("bot").version == 3, "a rollback")
        finally:
            loop.cancel()

    asyncio.run(until_rolled_back())
    assert len(calls) >= 2 and store.rollouts() == []


def test_a_hand_change_ends_the_rollout_and_is_kept(parts):
    store, aliases, rollouts, artifacts, clock = parts
    start(parts)
    aliases.set("bot", gateway_pb2.AliasTarget(teacher=common_pb2.ModelSpec(model="gpt-4o")), 2)
    traffic(artifacts, clock, student_passes=5)
    ((_, decision),) = rollouts.tick()
    assert decision.action == "abandoned" and "changed by hand" in decision.reason
    assert aliases.get("bot").target.teacher.model == "gpt-4o" and store.rollouts() == []


def test_without_an_incumbent_there_is_no_rollout(tmp_path):
    store = JobStore(tmp_path / "g.db")
    spec = gateway_pb2.DistillSpec(
        promote_alias="new", progressive=gateway_pb2.ProgressivePromotion(enabled=True))
    job = gateway_pb2.Job(name=JOB, state=gateway_pb2.JOB_STATE_SUCCEEDED, spec=spec,
                                     project="default")
    rollouts = Rollouts(Aliases(store), LocalStore(tmp_path / "s"))
    assert rollouts.start(job, progressive(spec.progressive),
                          gateway_pb2.AliasTarget(job=JOB)) is None
    assert store.rollouts() == []
