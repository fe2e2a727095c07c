"""A chat call by alias: resolve the alias for the caller's project, pick the target that
answers (a canary split), answer, check the answer against the version's validator (a failed
student answer is answered again by the fallback teacher), count it (RouterMetrics) and trace it.

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
from services.router.targets import AliasTargets, Target
from services.router.tracing import Tracing


class Router:
    def __init__(self, targets: AliasTargets, answerer: Answerer, metrics: RouterMetrics,
                 tracing: Tracing) -> None:
        self.targets = targets
        self.answerer = answerer
        self.metrics = metrics
        self.tracing = tracing
        self._rng = random.Random()  # canary draws for requests without a user

    async def answer(self, call: ChatCall, project: str) -> Answer:
        target = None
        try:
            target = await self._target(call, project)
            return await self._answer_on(target, call, project)
        except DistillError as exc:
            self._failed(target, exc)
            raise

    async def stream(self, call: ChatCall, project: str) -> AsyncIterator[Delta]:
        target = None
        parts: list[str] = []
        try:
            target = await self._target(call, project)
            if self._validator(target) is not None:  # checked whole, then sent in one piece
                answer = await self._answer_on(target, call, project)
                yield Delta(answer.content)
                yield Delta(final=replace(answer, content=""))
                return
            async for delta in self.answerer.stream(target, call):
                parts.append(delta.text)
                if delta.final is not None:
                    self._answered(delta.final)
                    self.tracing.record(call, project, target, delta.final, "".join(parts))
                yield delta
        except DistillError as exc:
            self._failed(target, exc)
            raise

    async def _target(self, call: ChatCall, project: str) -> Target:
        return self.targets.pick(await self.targets.resolve(call.model, project), call.user,
                                 self._rng)

    async def _answer_on(self, target: Target, call: ChatCall, project: str) -> Answer:
        answer = await self.answerer.answer(target, call)
        self._answered(answer)
        validator = self._validator(target)
        if validator is None:
            self.tracing.record(call, project, target, answer, answer.content)
            return answer
        passed, why = validator.check(answer.content, answer.latency_seconds)
        self.tracing.record(call, project, target, answer, answer.content,
                            validator="passed" if passed else "failed")
        if passed or validator.fallback is None:
            return answer
        self.metrics.fell_back(target.alias, target.version)
        teacher = self.targets.fallback(target, validator.fallback)
        again = await self.answerer.answer(teacher, call)
        self._answered(again)
        self.tracing.record(call, project, teacher, again, again.content, fallback_reason=why)
        return again

    def _validator(self, target: Target) -> Validator | None:
        """The version's validator, for answers that are not already a teacher's."""
        if not target.routing.HasField("validator") or \
                target.kind == router_pb2.TARGET_KIND_TEACHER:
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

