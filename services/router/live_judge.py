"""Live judging: the answers of an alias version whose routing names a judge (`routing.judge`)
are scored off the request's path, and the score lands in the trace's `judge_score`, which
progressive promotion compares (services/gateway/promotion.py).

- Sampled per request (`sample_rate`): every answer of a picked request is judged (the one
  served and each shadow's), so a shadow step scores both sides on the same requests. Only
  traced requests are judged: the trace is where the score goes.
- The judges are the judge service's own (services/common/judging/): a programmatic judge
  scores here, an LLM judge calls its model through the provider clients, with the endpoint
  policy's keys, as the router's teachers do.
- What the two sides are compared on (services/common/specs/routing.py `LiveJudge`): an LLM or
  programmatic judge sees the conversation and one answer, the teacher's as the student's; a
  reference judge takes the answer the alias's own target gave the same request as the
  reference, so the teacher scores 10 and a student's score is its agreement with the teacher.
  Canary and fallback answers have no such answer: a reference judge leaves them unscored.
- Bounded: at most `concurrency` answers are scored at once and `queue` more wait; beyond that
  the trace is written unscored and the drop counted (distill_router_judged{outcome="dropped"}).
  A trace waits for its score before it is queued for writing, so it is written once, whole.
- Spend: each trace carries `judge_cost_usd`, and distill_router_judge_cost_usd sums it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import replace

from distill.v1 import common_pb2
from services.common.errors import DistillError
from services.common.judging.build import build_judge
from services.common.judging.composite import Judge
from services.common.judging.models import JudgeModels
from services.common.judging.scores import Score
from services.common.metrics import RouterMetrics
from services.common.specs.routing import LiveJudge as LiveJudgeSpec
from services.common.specs.routing import routing as routing_spec
from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import Trace
from services.common.traces.redaction import Redactor
from services.router.targets import Target

log = logging.getLogger("distill.router")

_ROLES = {"system": common_pb2.ROLE_SYSTEM, "user": common_pb2.ROLE_USER,
          "assistant": common_pb2.ROLE_ASSISTANT}


class LiveJudge:
    def __init__(self, recorder: TraceRecorder, open_models: Callable[[], JudgeModels],
                 metrics: RouterMetrics, *, concurrency: int, queue: int,
                 rng: random.Random | None = None) -> None:
        self._recorder, self._open_models, self._metrics = recorder, open_models, metrics
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = concurrency + queue  # judged and waiting, together
        self._rng = rng or random.Random()
        # (project, alias, version) -> the version's judge spec; its judge, built on first use
        self._specs: dict[tuple[str, str, int], LiveJudgeSpec | None] = {}
        self._judges: dict[tuple[str, str, int], asyncio.Future[Judge]] = {}
        self._models: list[JudgeModels] = []
        self._tasks: set[asyncio.Task] = set()

    def draw(self, target: Target, project: str) -> bool:
        """Whether this request's answers are judged (its version's sample rate)."""
        if not target.routing.HasField("judge"):
            return False
        rate = self._spec(target, project).sample_rate
        return rate >= 1.0 or self._rng.random() < rate

    def submit(self, target: Target, trace: Trace, redact: Redactor | None,
               reference: str | None) -> None:
        """Scores `trace`'s answer in the background, then records the trace (at once,
        unscored, when it cannot be scored or the queue is full)."""
        spec = self._spec(target, trace.project)
        if spec.needs_reference and reference is None:
            self._done(target, trace, redact, "unscored")
            return
        if len(self._tasks) >= self._limit:
            self._done(target, trace, redact, "dropped")
            return
        prompt = common_pb2.Prompt(messages=[
            common_pb2.ChatMessage(role=_ROLES.get(role, common_pb2.ROLE_USER), content=text)
            for role, text in trace.messages])
        if spec.needs_reference:
            prompt.reference = reference
        task = asyncio.get_running_loop().create_task(
            self._score(prompt, target, trace, redact))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _score(self, prompt: common_pb2.Prompt, target: Target, trace: Trace,
                     redact: Redactor | None) -> None:
        score = Score.failed("not scored")  # cancelled at shutdown: the trace goes unscored
        try:
            judge = await self._judge(target, trace.project)
            async with self._slots:
                score = await judge.score(prompt, trace.answer)
        except DistillError as exc:  # e.g. a judge model whose endpoint the policy refuses
            score = Score.failed(str(exc))
        except Exception as exc:  # a judge's bug must not lose the trace
            log.exception("live judge of alias %s@%d failed", target.alias, target.version)
            score = Score.failed(type(exc).__name__)
        finally:
            if not score.ok and score.error != "not scored":
                log.warning("live judge of alias %s@%d could not score an answer: %s",
                            target.alias, target.version, score.error)
            scored = replace(trace, judge_score=score.value, judge_cost_usd=score.spend.cost_usd)
            self._done(target, scored, redact, "scored" if score.ok else "failed",
                       score.spend.cost_usd)

    def _done(self, target: Target, trace: Trace, redact: Redactor | None, outcome: str,
              cost_usd: float = 0.0) -> None:
        self._metrics.judge_outcome(target.alias, target.version, outcome, cost_usd)
        self._recorder.record(trace, redact)

    async def _judge(self, target: Target, project: str) -> Judge:
        """The version's judge, built once, in a thread (an LLM judge's SDK client makes its
        TLS context: tens of ms the event loop would stall for). A judge that cannot be built
        fails every answer the same way: the build's error is kept, not retried per answer."""
        key = (project, target.alias, target.version)
        if (built := self._judges.get(key)) is None:
            models = self._open_models()
            self._models.append(models)
            built = self._judges[key] = asyncio.ensure_future(asyncio.to_thread(
                build_judge, self._spec(target, project).judge, models))
        return await asyncio.shield(built)  # one answer's cancellation leaves it to the others

    def _spec(self, target: Target, project: str) -> LiveJudgeSpec:
        """The version's checked judge spec, read once (the gateway checked it when the
        version was set)."""
        key = (project, target.alias, target.version)
        if (spec := self._specs.get(key)) is None:
            spec = self._specs[key] = routing_spec(target.routing).judge
        assert spec is not None  # only asked for a version with a judge
        return spec

    async def aclose(self) -> None:
        """Stops judging: what is in flight is recorded unscored; the model clients close."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._judges.values(), return_exceptions=True)
        for models in self._models:
            await models.aclose()
