"""Progressive promotion's decision, and the live figures it reads from the alias's traces."""

from __future__ import annotations

import pytest

from distill.v1 import gateway_pb2
from services.common.specs.routing import progressive
from services.common.storage import LocalStore
from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace
from services.gateway.promotion import LiveStats, decide, live_stats

PLAN = progressive(gateway_pb2.ProgressivePromotion(enabled=True, window_requests=10,
                                                    canary_percents=[10, 100]))
GOOD = LiveStats(requests=10, validator_pass_rate=0.95, judge_score=8.0)
TEACHER = LiveStats(requests=50, validator_pass_rate=1.0, judge_score=8.2)


def test_too_few_requests_hold():
    d = decide(PLAN, 0, LiveStats(requests=9, validator_pass_rate=1.0), TEACHER)
    assert d.action == "hold" and d.step == 0
    assert d.reason == ("step 1 of 3 (shadow): waiting for 10 requests on each side (student 9, "
                        "teacher 50)")


def test_at_the_ratio_advances_and_the_last_step_is_done():
    d = decide(PLAN, 0, GOOD, TEACHER)
    assert (d.action, d.step) == ("advance", 1)
    assert d.reason.startswith("step 2 of 3 (10 % canary): validator pass rate 0.95 vs "
                               "teacher 1 (x0.95 required); judge score 8 vs teacher 8.2")
    done = decide(PLAN, 1, GOOD, TEACHER)
    assert (done.action, done.step) == ("done", 2) and done.reason.startswith("step 3 of 3 (100")


@pytest.mark.parametrize("student", [
    LiveStats(requests=10, validator_pass_rate=0.94, judge_score=9.0),
    LiveStats(requests=10, validator_pass_rate=1.0, judge_score=7.7),
])
def test_below_the_ratio_on_any_measure_rolls_back(student):
    d = decide(PLAN, 1, student, TEACHER)
    assert d.action == "rollback" and "rolled back" in d.reason and "10 % canary" in d.reason


def test_nothing_to_compare_holds_and_says_why():
    d = decide(PLAN, 0, LiveStats(requests=10), LiveStats(requests=10))
    assert d.action == "hold" and "give the alias a validator or a judge" in d.reason


async def test_live_stats_read_the_last_window_of_each_target(tmp_path):
    store = LocalStore(tmp_path)
    recorder = TraceRecorder(store)
    now = 1_764_720_000.0

    def add(target, i, validator, score=None):
        model = "jobs/new" if target == "student" else "gpt-4o"
        recorder.record(Trace(project="default", served_by=ServedBy("bot", 1, target, model),
                              messages=(("user", "q"),), answer="a", created_at=now + i,
                              validator=validator, judge_score=score, shadow=target == "student"))

    for i in range(5):  # older answers: failures, pushed out of the window of 10
        add("student", i, "failed")
    for i in range(5, 15):
        add("student", i, "passed" if i % 10 else "failed", score=8.0)
    for i in range(12):
        add("teacher", i, "passed", score=9.0)
    add("student", -100, "failed")  # before the step began
    await recorder.flush()

    stats = live_stats(store, "default", "bot", since=now, until=now + 60, window=10)
    assert stats["jobs/new"] == LiveStats(requests=15, validator_pass_rate=0.9, judge_score=8.0)
    assert stats["gpt-4o"] == LiveStats(requests=12, validator_pass_rate=1.0, judge_score=9.0)
