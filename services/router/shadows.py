"""Shadow targets: after the caller has its answer, each of the version's shadows answers the
same request in the background; the answer is checked by the validator, judged with the served
answer when the live judge picked the request, and traced (marked as a shadow), never returned.
Progressive promotion's first step compares the student this way.

At most `limit` shadow calls run at once; beyond that a shadow call is skipped and counted
(distill_router_shadow_skipped): shadows never slow or fail the caller's request.
"""

from __future__ import annotations

import asyncio
import logging

from services.common.errors import DistillError
from services.common.metrics import RouterMetrics
from services.common.specs.routing import Validator
from services.common.specs.routing import routing as routing_spec
from services.router.answering import Answerer
from services.router.chat import Answer, ChatCall
from services.router.targets import AliasTargets, Target
from services.router.tracing import Tracing

log = logging.getLogger("distill.router")


def outcome(validator: Validator | None, text: str, answer: Answer) -> str | None:
    """"passed" / "failed" under the version's validator; None without one."""
    if validator is None:
        return None
    return "passed" if validator.check(text, answer.latency_seconds)[0] else "failed"


class Shadows:
    def __init__(self, targets: AliasTargets, answerer: Answerer, tracing: Tracing,
                 metrics: RouterMetrics, limit: int) -> None:
        self._targets, self._answerer, self._tracing = targets, answerer, tracing
        self._metrics, self._limit = metrics, limit
        self._running: set[asyncio.Task] = set()

    def start(self, call: ChatCall, project: str, target: Target, *, judged: bool = False,
              reference: str | None = None) -> None:
        """`judged`, `reference`: as for the served answer (Tracing.record)."""
        if not target.routing.shadows:
            return
        validator = routing_spec(target.routing).validator
        for record in target.routing.shadows:
            if len(self._running) >= self._limit:
                self._metrics.shadow_skipped(target.alias, target.version)
                continue
            shadow = self._targets.variant(target, record)
            task = asyncio.get_running_loop().create_task(
                self._answer(call, project, shadow, validator, judged, reference))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(self, call: ChatCall, project: str, shadow: Target,
                      validator: Validator | None, judged: bool, reference: str | None) -> None:
        try:
            answer = await self._answerer.answer(shadow, call)
        except DistillError as exc:
            log.warning("shadow %s of alias %s failed: %s", shadow.model, shadow.alias, exc)
            return
        self._tracing.record(call, project, shadow, answer, answer.content,
                             validator=outcome(validator, answer.content, answer), shadow=True,
                             judged=judged, reference=reference)

    async def aclose(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
