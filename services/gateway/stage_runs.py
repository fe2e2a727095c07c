"""What a stage's groups cost the job when the stage's stream may be run again.

The gateway runs a generation, or a judging, as one or more runs of the stage's stream: a stream
lost in transport is run again (`stages.again_if_lost`), and the new run answers the calls the
old one finished from the cache, free. Each prompt's group is counted at its first delivery. A
run that broke may have paid for calls whose groups were still on their way (queued in the
service, or in the stream's buffers); their answers arrive in the next run from the cache, each
naming the run that paid (`PaidCall`: a candidate's `paid`, a judged group's `cached_calls`).
Such an answer is charged at its group's first delivery, once per call, when that run was one of
this stage's earlier runs. A call that another job or this job before a gateway restart paid for
is not charged again here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TypeVar

from distill.v1 import common_pb2, generator_pb2, judge_pb2
from services.common.specs import names
from services.common.spend import Spend

log = logging.getLogger("distill.gateway.stage_runs")

# What a judged group's usage counts for each of its cached calls.
ONE_CACHED_CALL = Spend(requests=1, cached_requests=1)

# A cached answer: what its group counts for it, and the call that paid for it.
Cached = tuple[Spend, common_pb2.PaidCall]
R = TypeVar("R", generator_pb2.GenerateRequest, judge_pb2.JudgeConfig)


class StageRuns:
    def __init__(self) -> None:
        self._runs: list[str] = []
        self._delivered: set[str] = set()  # prompt ids whose group came (and was charged)
        self._late: set[tuple[str, str, str]] = set()  # (run, prompt, cache key) charged late

    def next_run(self, request: R) -> R:
        """`request` (a GenerateRequest or a JudgeConfig) for a new run, with its own run id."""
        run = type(request)()
        run.CopyFrom(request)
        run.run_id = names.new_job_id()
        self._runs.append(run.run_id)
        return run

    def charge(self, prompt_id: str, spend: Spend, cached: Iterable[Cached]) -> Spend | None:
        """What a group's delivery charges the job: `spend`, what the group says it cost, with
        each cached answer that an earlier run paid for but never delivered counted at what its
        call cost instead; None when the group came before (nothing)."""
        if prompt_id in self._delivered:
            return None
        earlier = self._runs[:-1]
        for counted, paid in cached:
            call = (paid.run_id, paid.prompt_id, paid.call)
            if paid.run_id in earlier and paid.prompt_id not in self._delivered \
                    and call not in self._late:
                self._late.add(call)
                spend = spend - counted + Spend.of(paid.usage)
                log.info("charged a call an earlier run paid for but never delivered",
                         extra={"run": paid.run_id, "paid_for": paid.prompt_id,
                                "delivered_as": prompt_id, "cost_usd": paid.usage.cost_usd})
        self._delivered.add(prompt_id)
        return spend


class GeneratorRuns(StageRuns):
    def first(self, group: common_pb2.CandidateGroup) -> Spend | None:
        """What the group's delivery charges the job; None when it came before."""
        return self.charge(
            group.prompt.id, Spend.total(Spend.of(c.usage) for c in group.candidates),
            ((Spend.of(c.usage), c.paid) for c in group.candidates if c.cached))


class JudgeRuns(StageRuns):
    def first(self, group: judge_pb2.JudgedGroup) -> Spend | None:
        """What the judged group's delivery charges the job; None when it came before."""
        return self.charge(group.prompt_id, Spend.of(group.usage),
                          ((ONE_CACHED_CALL, paid) for paid in group.cached_calls))
