"""What the router records of each answer (services/common/traces/): off the request's path.

A request is traced unless its caller opted out (`no_trace`, or the HTTP header
`x-distill-trace: off`) or its alias version's routing turns capture off; the alias's redaction
rules go with the trace and are applied when the batch is written.
"""

from __future__ import annotations

import time

from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace
from services.common.traces.redaction import redactor
from services.router.chat import Answer, ChatCall
from services.router.targets import Target


class Tracing:
    def __init__(self, recorder: TraceRecorder | None) -> None:
        self.recorder = recorder

    def record(self, call: ChatCall, project: str, target: Target, answer: Answer, text: str,
               *, validator: str | None = None, fallback_reason: str | None = None,
               shadow: bool = False) -> None:
        """`validator`: "passed" or "failed" when the version has one; `fallback_reason`: why
        the teacher answered instead (the trace is the teacher's answer)."""
        capture = target.routing.capture
        if self.recorder is None or not call.trace or capture.disabled:
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
        self.recorder.record(trace, rules or None)
