"""Progressive promotions in flight: each one moves its alias a step at a time, as its student
earns it on live traffic, or rolls the alias back.

A rollout starts when a job with `spec.progressive` passes the eval gate and its alias already
serves something (the incumbent: a teacher or an older student); with nothing to compare against,
the job promotes at once as before. Every step is an alias version whose description says why.
The step's routing keeps the incumbent's validator, live judge and trace capture: shadow adds
the student as a shadow target, a canary step gives it that percent, the last step makes it the
target. A
person changing the alias by hand ends the rollout (their change wins). State lives in the job
store, so a restarted gateway carries on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from base64 import b64decode, b64encode
from dataclasses import asdict, dataclass

from distill.v1 import gateway_pb2
from services.common import errors
from services.common.specs.routing import Progressive
from services.common.storage import ArtifactStore
from services.gateway.aliases import Aliases
from services.gateway.promotion import Decision, LiveStats, decide, live_stats, step_name

log = logging.getLogger("distill.gateway")


@dataclass
class Rollout:
    project: str
    alias: str
    job: str
    steps: list[int]
    window_requests: int
    min_ratio: float
    step: int
    step_started: float
    version: int  # the alias version this rollout last wrote
    incumbent: str  # base64 AliasVersion: what the alias served before, restored on rollback

    @property
    def plan(self) -> Progressive:
        return Progressive(tuple(self.steps), self.window_requests, self.min_ratio)

    def incumbent_version(self) -> gateway_pb2.AliasVersion:
        return gateway_pb2.AliasVersion.FromString(b64decode(self.incumbent))

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Rollout:
        return cls(**json.loads(data))


def model_key(target: gateway_pb2.AliasTarget) -> str:
    """How traces name the model behind a target (`served_by.model`, as the router writes it:
    the job for a student, the model id for a teacher or an upstream)."""
    kind = target.WhichOneof("target")
    if kind == "job":
        return target.job
    return target.upstream.model if kind == "upstream" else target.teacher.model


def step_routing(incumbent: gateway_pb2.AliasVersion, student: gateway_pb2.AliasTarget,
                 percent: int) -> tuple[gateway_pb2.AliasTarget, gateway_pb2.AliasRouting]:
    """The alias's target and routing at a step where the student gets `percent` (0: shadow)."""
    routing = gateway_pb2.AliasRouting()
    for kept in ("validator", "capture", "judge"):  # the incumbent's checks hold at every step
        if incumbent.routing.HasField(kept):
            getattr(routing, kept).CopyFrom(getattr(incumbent.routing, kept))
    target = gateway_pb2.AliasTarget()
    target.CopyFrom(incumbent.target)
    if percent == 0:
        routing.shadows.add().CopyFrom(student)
    elif percent < 100:
        routing.canary.add(target=student, percent=percent)
    else:
        target.CopyFrom(student)
    return target, routing


class Rollouts:
    def __init__(self, aliases: Aliases, artifacts: ArtifactStore, *, clock=time.time) -> None:
        self.aliases, self.artifacts, self.clock = aliases, artifacts, clock
        self._holding: dict[str, str] = {}  # job -> why its rollout last held, said once

    @property
    def _store(self):
        return self.aliases.store

    def start(self, job: gateway_pb2.Job, plan: Progressive,
              student: gateway_pb2.AliasTarget) -> gateway_pb2.Alias | None:
        """Puts the alias at the plan's first step; None when the alias does not exist yet (the
        caller promotes at once: there is nothing to compare the student with)."""
        name, project = job.spec.promote_alias, job.project
        try:
            alias = self.aliases.get(name, project)
        except errors.NotFound:
            return None
        incumbent = alias.history[-1]
        rollout = Rollout(project=project, alias=name, job=job.name, steps=list(plan.steps),
                          window_requests=plan.window_requests, min_ratio=plan.min_ratio,
                          step=0, step_started=self.clock(), version=alias.version,
                          incumbent=b64encode(incumbent.SerializeToString()).decode())
        reason = (f"progressive promotion of {job.name}: step 1 of {len(plan.steps)} "
                  f"({step_name(plan, 0)}) after the eval gate")
        updated = self._write(rollout, 0, reason, student)
        if plan.steps[0] < 100:
            self._store.save_rollout(project, name, rollout.to_bytes())
        return updated

    def tick(self) -> list[tuple[str, Decision]]:
        """Judges every rollout once on its live traffic and applies what it decides."""
        decisions = []
        for data in self._store.rollouts():
            rollout = Rollout.from_bytes(data)
            try:
                decision = self._tick(rollout)
            except errors.Aborted:
                decision = Decision("abandoned", rollout.step,
                                    f"alias {rollout.alias!r} was changed by hand: the rollout "
                                    f"of {rollout.job} stops there")
                self._store.delete_rollout(rollout.project, rollout.alias)
            except Exception:  # the traces' store may be back at the next check: it holds
                log.exception("alias %s: could not check the rollout of %s", rollout.alias,
                              rollout.job)
                continue
            if decision.action != "hold" or self._holding.get(rollout.job) != decision.reason:
                log.info("alias %s: %s", rollout.alias, decision.reason)
            if decision.action == "hold":
                self._holding[rollout.job] = decision.reason
            else:
                self._holding.pop(rollout.job, None)
            decisions.append((rollout.alias, decision))
        return decisions

    async def run(self, interval: float) -> None:
        while True:
            try:
                await asyncio.to_thread(self.tick)
            except Exception:  # a failed check must not end every later one
                log.exception("could not check the rollouts")
            await asyncio.sleep(interval)

    def _tick(self, rollout: Rollout) -> Decision:
        alias = self.aliases.get(rollout.alias, rollout.project)
        if alias.version != rollout.version:
            raise errors.Aborted("changed by hand")
        incumbent = rollout.incumbent_version()
        stats = live_stats(self.artifacts, rollout.project, rollout.alias, rollout.step_started,
                           self.clock(), rollout.window_requests)
        none = LiveStats(requests=0)
        decision = decide(rollout.plan, rollout.step, stats.get(rollout.job, none),
                          stats.get(model_key(incumbent.target), none))
        student = self._student(alias, rollout)
        if decision.action == "rollback":
            self._store.set_alias(rollout.alias, self._described(
                incumbent.target, f"rollback of {rollout.job}: {decision.reason}"),
                rollout.version, rollout.project,
                incumbent.routing if incumbent.HasField("routing") else None)
            self._store.delete_rollout(rollout.project, rollout.alias)
        elif decision.action in ("advance", "done"):
            self._write(rollout, decision.step,
                        f"progressive promotion of {rollout.job}: {decision.reason}", student)
            if decision.action == "done":
                self._store.delete_rollout(rollout.project, rollout.alias)
            else:
                rollout.step, rollout.step_started = decision.step, self.clock()
                self._store.save_rollout(rollout.project, rollout.alias, rollout.to_bytes())
        return decision

    def _student(self, alias: gateway_pb2.Alias, rollout: Rollout) -> gateway_pb2.AliasTarget:
        """The student's target as the alias holds it now (its GGUF resolved)."""
        routing = alias.routing
        for target in [*routing.shadows, *(c.target for c in routing.canary), alias.target]:
            if target.job == rollout.job:
                return target
        raise errors.Aborted("the student is no longer on the alias")

    def _write(self, rollout: Rollout, step: int, reason: str,
               student: gateway_pb2.AliasTarget) -> gateway_pb2.Alias:
        target, routing = step_routing(rollout.incumbent_version(), student, rollout.steps[step])
        alias = self._store.set_alias(rollout.alias, self._described(target, reason),
                                      rollout.version, rollout.project, routing)
        rollout.version = alias.version
        return alias

    @staticmethod
    def _described(target: gateway_pb2.AliasTarget, reason: str) -> gateway_pb2.AliasTarget:
        described = gateway_pb2.AliasTarget()
        described.CopyFrom(target)
        described.description = reason
        return described
