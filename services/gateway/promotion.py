"""Progressive promotion: whether a student earns the next step of traffic, from live traffic.

A step is judged on the last `window_requests` requests each side answered since the step began
(shadow answers count for the student): the student's validator pass rate and judge score must
both be at least the teacher's times `min_ratio`, on each measure both sides have. Below on any:
roll back. Too few requests: hold. Nothing to compare (no validator, no judge): hold, and say so,
since promoting blind is what this exists to prevent.

The judge score is the router's live judge's (`routing.judge`, services/router/live_judge.py),
the mean over the window's scored answers. Both sides are scored alike: an LLM or programmatic
judge on the conversation and the answer alone; a reference judge against the teacher's answer
to the same request, so the teacher's own score is 10 and the student's is how often it agrees.
"""

from __future__ import annotations

import statistics
from collections import defaultdict, deque
from dataclasses import dataclass

from services.common.specs.routing import Progressive
from services.common.storage import ArtifactStore
from services.gateway.trace_datasets import TraceQuery, matching_lines


@dataclass(frozen=True)
class LiveStats:
    requests: int
    validator_pass_rate: float | None = None
    judge_score: float | None = None  # mean, 0-10


@dataclass(frozen=True)
class Decision:
    action: str  # "hold", "advance", "rollback" or "done" (advanced to the last step)
    step: int  # the step the alias is at after the action
    reason: str


def step_name(plan: Progressive, step: int) -> str:
    percent = plan.steps[step]
    return "shadow" if percent == 0 else f"{percent} % canary"


def decide(plan: Progressive, step: int, student: LiveStats, teacher: LiveStats) -> Decision:
    where = f"step {step + 1} of {len(plan.steps)} ({step_name(plan, step)})"
    need = plan.window_requests
    if student.requests < need or teacher.requests < need:
        return Decision("hold", step, f"{where}: waiting for {need} requests on each side "
                        f"(student {student.requests}, teacher {teacher.requests})")
    compared = []
    for measure, unit in (("validator_pass_rate", "validator pass rate"),
                          ("judge_score", "judge score")):
        ours, theirs = getattr(student, measure), getattr(teacher, measure)
        if ours is None or theirs is None:
            continue
        line = f"{unit} {ours:.3g} vs teacher {theirs:.3g} (x{plan.min_ratio:g} required)"
        if ours < theirs * plan.min_ratio:
            return Decision("rollback", -1, f"{where}: rolled back: {line}")
        compared.append(line)
    if not compared:
        return Decision("hold", step, f"{where}: nothing to compare the student on: give the "
                        "alias a validator or a judge")
    nxt = min(step + 1, len(plan.steps) - 1)
    # The last step (all traffic on the student) leaves nothing to compare: reaching it ends it.
    action = "done" if nxt == len(plan.steps) - 1 else "advance"
    return Decision(action, nxt, f"step {nxt + 1} of {len(plan.steps)} "
                    f"({step_name(plan, nxt)}): {'; '.join(compared)} over the last {need} "
                    "requests")


def live_stats(store: ArtifactStore, project: str, alias: str, since: float, until: float,
               window: int) -> dict[str, LiveStats]:
    """Per model that answered (a student's job name, a teacher's model id: `served_by.model`),
    its last `window` answers since `since`."""
    recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
    counts: dict[str, int] = defaultdict(int)
    query = TraceQuery(project=project, alias=alias, since=since, until=until)
    for line in matching_lines(store, query):
        target = (line.get("served_by") or {}).get("model", "")
        counts[target] += 1
        recent[target].append((line.get("validator"), line.get("judge_score")))
    stats = {}
    for target, answers in recent.items():
        judged = [v == "passed" for v, _ in answers if v is not None]
        scores = [s for _, s in answers if s is not None]
        stats[target] = LiveStats(
            requests=counts[target],
            validator_pass_rate=sum(judged) / len(judged) if judged else None,
            judge_score=statistics.fmean(scores) if scores else None)
    return stats
