"""A chat call by alias: resolve the alias for the caller's project, pick the target that
answers (a canary split), answer, check the answer against the version's validator (a failed
student answer is answered again by the fallback teacher), count it (RouterMetrics) and trace it
(its version's live judge scores the traces of a sampled request before they are written).

With a validator, a streamed answer from a student is checked whole before it is sent: the
caller gets it (or the teacher's) in one piece, since a stream cannot be taken back.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import replace

from distill.v1 import gateway_pb2, router_pb2
from services.common.errors import DistillError
from services.common.metrics import RouterMetrics
from services.common.specs.routing import Validator
from services.common.specs.routing import routing as routing_spec
from services.router.answering import Answerer
from services.router.chat import KIND_NAMES, Answer, ChatCall, Delta
from services.router.shadows import Shadows
from services.router.shadows import outcome as _outcome
from services.router.targets import AliasTargets, Target
from services.router.tracing import Tracing


class Router:
    def __init__(self, targets: AliasTargets, answerer: Answerer, metrics: RouterMetrics,
                 tracing: Tracing, shadows: Shadows) -> None:
        self.targets = targets
        self.answerer = answerer
        self.metrics = metrics
        self.tracing = tracing
        self.shadows = shadows
        self._rng = random.Random()  # canary draws for requests without a user

    async def answer(self, call: ChatCall, project: str) -> Answer:
        target = None
        try:
            target, primary = await self._target(call, project)
            return await self._answer_on(target, primary, call, project)
        except DistillError as exc:
            self._failed(target, exc)
            raise

    async def stream(self, call: ChatCall, project: str) -> AsyncIterator[Delta]:
        target = None
        parts: list[str] = []
        try:
            target, primary = await self._target(call, project)
            validator = self._validator(target)
            if validator is not None and target.kind != router_pb2.TARGET_KIND_TEACHER:
                # checked whole, then sent in one piece: a stream cannot be taken back
                answer = await self._answer_on(target, primary, call, project)
                yield Delta(answer.content)
                yield Delta(final=replace(answer, content=""))
                return
            async for delta in self.answerer.stream(target, call):
                parts.append(delta.text)
                if (final := delta.final) is not None:
                    self._answered(final)
                    text = "".join(parts)
                    judged = self.tracing.judged(call, project, target)
                    reference = text if primary else None
                    self.tracing.record(call, project, target, final, text,
                                        validator=_outcome(validator, text, final),
                                        judged=judged, reference=reference)
                    self.shadows.start(call, project, target, judged=judged,
                                       reference=reference)
                yield delta
        except DistillError as exc:
            self._failed(target, exc)
            raise

    async def _target(self, call: ChatCall, project: str) -> tuple[Target, bool]:
        """Who answers, and whether it is the version's own target (not a canary)."""
        resolved = await self.targets.resolve(call.model, project)
        target = self.targets.pick(resolved, call.user, self._rng)
        return target, target is resolved

    async def _answer_on(self, target: Target, primary: bool, call: ChatCall,
                         project: str) -> Answer:
        """The answer of `target`, checked by the version's validator (every answer is checked,
        so the teacher's pass rate is there to compare with; only a failed non-teacher answer
        falls back), traced; the version's shadows then answer in the background. When the
        live judge picks the request, the answer of the version's own target is the reference
        of every answer to it (its own included); a canary's or a fallback's has none."""
        answer = await self.answerer.answer(target, call)
        self._answered(answer)
        judged = self.tracing.judged(call, project, target)
        reference = answer.content if primary else None
        self.shadows.start(call, project, target, judged=judged, reference=reference)
        validator = self._validator(target)
        outcome = _outcome(validator, answer.content, answer)
        self.tracing.record(call, project, target, answer, answer.content, validator=outcome,
                            judged=judged, reference=reference)
        if outcome != "failed" or validator.fallback is None or \
                target.kind == router_pb2.TARGET_KIND_TEACHER:
            return answer
        self.metrics.fell_back(target.alias, target.version)
        teacher = self.targets.variant(target, gateway_pb2.AliasTarget(
            teacher=validator.fallback, max_tokens_limit=target.record.max_tokens_limit))
        again = await self.answerer.answer(teacher, call)
        self._answered(again)
        why = validator.check(answer.content, answer.latency_seconds)[1]
        self.tracing.record(call, project, teacher, again, again.content, fallback_reason=why,
                            judged=judged)
        return again

    @staticmethod
    def _validator(target: Target) -> Validator | None:
        if not target.routing.HasField("validator"):
            return None
        return routing_spec(target.routing).validator

    async def aliases(self, project: str) -> list[gateway_pb2.Alias]:
        return await self.targets.list(project)

    def _answered(self, answer: Answer) -> None:
        served = answer.served_by
        self.metrics.answered(served.alias, served.version, served.kind_name,
                              answer.prompt_tokens, answer.completion_tokens, answer.cost_usd,
                              answer.latency_seconds)

    def _failed(self, target: Target | None, exc: DistillError) -> None:
        if target is None:
            self.metrics.failed("", 0, "", exc.code.name)
        else:
            self.metrics.failed(target.alias, target.version,
                                KIND_NAMES.get(target.kind, "unspecified"), exc.code.name)

