"""What a generation's candidate groups cost the job when the generator's stream may be run again.

The gateway runs one generation as one or more generator runs: a stream lost in transport is
run again (`stages.again_if_lost`), and the new run answers the calls the old one finished from
the teacher cache, free. Each prompt's group is counted at its first delivery. A run that broke
may have paid for calls whose groups were still on their way (queued in the generator, or in the
stream's buffers); their answers arrive in the next run as cached candidates that name the run
that paid (`Candidate.paid`). Such a candidate is charged at its group's first delivery, once
per call, when that run was one of this generation's earlier runs. A call that another job or
this job before a gateway restart paid for is not charged again here.
"""

from __future__ import annotations

from distill.v1 import common_pb2, generator_pb2
from services.common.specs import names
from services.common.spend import Spend


class GeneratorRuns:
    def __init__(self) -> None:
        self._runs: list[str] = []
        self._delivered: set[str] = set()  # prompt ids whose group came (and was charged)
        self._late: set[tuple[str, str, int]] = set()  # (run, prompt, sample) charged late

    def next_run(self, request: generator_pb2.GenerateRequest) -> generator_pb2.GenerateRequest:
        """`request` for a new run, with its own run id."""
        run = generator_pb2.GenerateRequest()
        run.CopyFrom(request)
        run.run_id = names.new_job_id()
        self._runs.append(run.run_id)
        return run

    def first(self, group: common_pb2.CandidateGroup) -> Spend | None:
        """What the group's delivery charges the job; None when it came before (nothing)."""
        if group.prompt.id in self._delivered:
            return None
        earlier = self._runs[:-1]
        spend = Spend()
        for candidate in group.candidates:
            call = (candidate.paid.run_id, candidate.paid.prompt_id, candidate.sample_index)
            unpaid = (candidate.cached and call[0] in earlier
                      and call[1] not in self._delivered and call not in self._late)
            if unpaid:
                self._late.add(call)
                spend += Spend.of(candidate.paid.usage)
            else:
                spend += Spend.of(candidate.usage)
        self._delivered.add(group.prompt.id)
        return spend
