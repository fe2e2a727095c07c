"""A chat call by alias: resolve the alias for the caller's project, answer on its target, and
count it (services/common/metrics.py, RouterMetrics)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

from distill.v1 import gateway_pb2
from services.common.errors import DistillError
from services.common.metrics import RouterMetrics
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
            target = self.targets.pick(await self.targets.resolve(call.model, project),
                                       call.user, self._rng)
            answer = await self.answerer.answer(target, call)
        except DistillError as exc:
            self._failed(target, exc)
            raise
        self._answered(answer)
        self.tracing.record(call, project, target, answer, answer.content)
        return answer

    async def stream(self, call: ChatCall, project: str) -> AsyncIterator[Delta]:
        target = None
        parts: list[str] = []
        try:
            target = self.targets.pick(await self.targets.resolve(call.model, project),
                                       call.user, self._rng)
            async for delta in self.answerer.stream(target, call):
                parts.append(delta.text)
                if delta.final is not None:
                    self._answered(delta.final)
                    self.tracing.record(call, project, target, delta.final, "".join(parts))
                yield delta
        except DistillError as exc:
            self._failed(target, exc)
            raise

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
