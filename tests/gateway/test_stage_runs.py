"""What a generation's and a judging's groups cost the job across runs (a lost stream run
again)."""

import pytest

from distill.v1 import common_pb2, generator_pb2, judge_pb2
from services.common.spend import Spend
from services.gateway.stage_runs import ONE_CACHED_CALL, GeneratorRuns, JudgeRuns

CALL = common_pb2.Usage(requests=1, input_tokens=10, output_tokens=2, cost_usd=0.5)
HIT = common_pb2.Usage(requests=1, cached_requests=1)
PAID = Spend.of(CALL)
FREE = Spend.of(HIT)


def fresh(prompt: str, run: str, index: int = 0) -> common_pb2.Candidate:
    return common_pb2.Candidate(prompt_id=prompt, sample_index=index, usage=CALL,
                                paid=common_pb2.PaidCall(run_id=run, prompt_id=prompt,
                                                         call=f"{prompt}-{index}", usage=CALL))


def hit(prompt: str, paid_by_run: str, paid_for: str, index: int = 0) -> common_pb2.Candidate:
    return common_pb2.Candidate(prompt_id=prompt, sample_index=index, usage=HIT, cached=True,
                                paid=common_pb2.PaidCall(run_id=paid_by_run, prompt_id=paid_for,
                                                         call=f"{paid_for}-{index}", usage=CALL))


def group(prompt: str, *candidates: common_pb2.Candidate) -> common_pb2.CandidateGroup:
    return common_pb2.CandidateGroup(prompt=common_pb2.Prompt(id=prompt), candidates=candidates)


@pytest.mark.parametrize("runs, request_", [
    (GeneratorRuns(), generator_pb2.GenerateRequest(job_id="j1", n_samples=2)),
    (JudgeRuns(), judge_pb2.JudgeConfig(job_id="j1", top_k=3))])
def test_each_run_gets_its_own_id_and_keeps_the_request(runs, request_):
    first, second = runs.next_run(request_), runs.next_run(request_)
    assert first.run_id and second.run_id and first.run_id != second.run_id
    first.run_id = second.run_id = ""
    assert first == second == request_ and not request_.run_id


def test_a_group_delivered_again_costs_nothing_more():
    runs = GeneratorRuns()
    one = runs.next_run(generator_pb2.GenerateRequest()).run_id
    assert runs.first(group("p1", fresh("p1", one))) == PAID
    two = runs.next_run(generator_pb2.GenerateRequest()).run_id
    assert two != one
    assert runs.first(group("p1", hit("p1", one, "p1"))) is None


def test_a_call_an_earlier_run_paid_whose_group_never_came_is_charged_once():
    runs = GeneratorRuns()
    one = runs.next_run(generator_pb2.GenerateRequest()).run_id
    runs.next_run(generator_pb2.GenerateRequest())
    # p2 duplicates p1's messages: both read the entry run one paid for p1.
    assert runs.first(group("p2", hit("p2", one, "p1"))) == PAID
    assert runs.first(group("p1", hit("p1", one, "p1"))) == FREE


def test_a_call_whose_group_came_in_the_run_that_paid_is_not_charged_again():
    runs = GeneratorRuns()
    one = runs.next_run(generator_pb2.GenerateRequest()).run_id
    assert runs.first(group("p1", fresh("p1", one))) == PAID
    runs.next_run(generator_pb2.GenerateRequest())
    assert runs.first(group("p2", hit("p2", one, "p1"))) == FREE  # a duplicate of p1


def test_calls_other_runs_paid_are_free():
    runs = GeneratorRuns()
    current = runs.next_run(generator_pb2.GenerateRequest()).run_id
    # Another job's (or this job's before a gateway restart), an entry older than the field,
    # and a duplicate prompt within the current run.
    assert runs.first(group("p1", hit("p1", "elsewhere", "p1"))) == FREE
    assert runs.first(group("p2", hit("p2", "", ""))) == FREE
    assert runs.first(group("p3", hit("p3", current, "p9"))) == FREE


def test_charges_go_per_sample():
    runs = GeneratorRuns()
    one = runs.next_run(generator_pb2.GenerateRequest()).run_id
    two = runs.next_run(generator_pb2.GenerateRequest()).run_id
    delivered = group("p1", hit("p1", one, "p1", 0), fresh("p1", two, 1),
                      hit("p1", "other-job", "p1", 2))
    assert runs.first(delivered) == PAID + PAID + FREE


def judged(prompt: str, fresh_calls: int, *cached: tuple[str, str, str]) -> judge_pb2.JudgedGroup:
    """A judged group: `fresh_calls` paid now, and cached calls as (paying run, prompt, key)."""
    usage = Spend.total([PAID] * fresh_calls + [ONE_CACHED_CALL] * len(cached))
    return judge_pb2.JudgedGroup(prompt_id=prompt, usage=usage.to_proto(), cached_calls=[
        common_pb2.PaidCall(run_id=run, prompt_id=paid_for, call=key, usage=CALL)
        for run, paid_for, key in cached])


def test_a_judge_call_an_earlier_run_paid_whose_group_never_came_is_charged_once():
    runs = JudgeRuns()
    one = runs.next_run(judge_pb2.JudgeConfig()).run_id
    assert runs.first(judged("p1", 2)) == PAID + PAID
    runs.next_run(judge_pb2.JudgeConfig())
    # Run one judged p2 (two calls: a candidate and its re-ask) and broke before delivering it;
    # p3 duplicates p2's candidate and reads the first of those entries.
    late = judged("p2", 1, (one, "p2", "k-a"), (one, "p2", "k-b"))
    assert runs.first(late) == PAID + PAID + PAID
    assert runs.first(judged("p3", 0, (one, "p2", "k-a"))) == ONE_CACHED_CALL
    assert runs.first(late) is None  # delivered again: nothing more


def test_judge_calls_other_runs_paid_or_whose_group_came_are_free():
    runs = JudgeRuns()
    one = runs.next_run(judge_pb2.JudgeConfig()).run_id
    assert runs.first(judged("p1", 1)) == PAID
    current = runs.next_run(judge_pb2.JudgeConfig()).run_id
    assert runs.first(judged("p2", 0, (one, "p1", "k"))) == ONE_CACHED_CALL  # p1's came
    assert runs.first(judged("p3", 0, ("other-job", "p3", "k"))) == ONE_CACHED_CALL
    assert runs.first(judged("p4", 0, (current, "p9", "k"))) == ONE_CACHED_CALL
