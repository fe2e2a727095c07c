"""What the router records of each answer (services/common/traces/): off the request's path.

A request is traced unless its caller opted out (`no_trace`, or the HTTP header
`x-distill-trace: off`) or its alias version's routing turns capture off; the alias's redaction
rules go with the trace and are applied when the batch is written. A request its version's live
judge picked (`judged`) has each answer's trace scored first (services/router/live_judge.py).
"""

from __future__ import annotations

import time

from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace
from services.common.traces.redaction import redactor
from services.router.chat import Answer, ChatCall
from services.router.live_judge import LiveJudge
from services.router.targets import Target


class Tracing:
    def __init__(self, recorder: TraceRecorder | None, judge: LiveJudge | None = None) -> None:
        self.recorder = recorder
        self.judge = judge

    def traced(self, call: ChatCall, target: Target) -> bool:
        return self.recorder is not None and call.trace and not target.routing.capture.disabled

    def judged(self, call: ChatCall, project: str, target: Target) -> bool:
        """Whether the answers to this request are judged: drawn once per request, so its
        served answer and its shadows' are judged together or not at all."""
        return self.judge is not None and self.traced(call, target) and self.judge.draw(
            target, project)

    def record(self, call: ChatCall, project: str, target: Target, answer: Answer, text: str,
               *, validator: str | None = None, fallback_reason: str | None = None,
               shadow: bool = False, judged: bool = False, reference: str | None = None) -> None:
        """`validator`: "passed" or "failed" when the version has one; `fallback_reason`: why
        the teacher answered instead (the trace is the teacher's answer); `judged`: the live
        judge scores the answer before the trace is written, against `reference` (the answer
        the alias's own target gave this request) where its judge needs one."""
        capture = target.routing.capture
        if not self.traced(call, target):
            return
        served = answer.served_by
        trace = Trace(
            project=project,
            served_by=ServedBy(served.alias, served.version, served.kind_name, served.model),
            messages=tuple((m.role, m.content) for m in call.messages), answer=text,
            created_at=time.time(), latency_seconds=answer.latency_seconds,
            prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
            cost_usd=answer.cost_usd, tags=dict(call.tags), validator=validator,
            fallback_reason=fallback_reason, shadow=shadow)
        rules = redactor(list(capture.redact), list(capture.redact_patterns), "routing.capture")
        if judged and self.judge is not None:
            self.judge.submit(target, trace, rules or None, reference)
        else:
            self.recorder.record(trace, rules or None)
