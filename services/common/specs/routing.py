"""An alias's traffic rules (`AliasRouting`) and progressive promotion (`ProgressivePromotion`):
defaults, bounds, and the one rule every router replica uses to pick a target.

The pick is part of the contract, not of one router: a request's sticky key hashes to the same
point in [0, 100) on every replica and after every restart, so one user sees one version for as
long as the split stands, and moving a canary from 5 % to 25 % keeps the first 5 % where they were.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from distill.v1 import common_pb2, gateway_pb2
from services.common.answer_checks import Check, label_in, programmatic_check
from services.common.errors import InvalidArgument
from services.common.specs.fields import float_value
from services.common.specs.judge import (
    CompositeJudgeSpec,
    JsonSchemaJudgeSpec,
    JudgeKind,
    LengthJudgeSpec,
    ReferenceJudgeSpec,
    RegexJudgeSpec,
    judge_kind,
    llm_judges,
)
from services.common.traces.redaction import Redactor, redactor

DEFAULT_CANARY_PERCENTS = (5, 25, 50, 100)
DEFAULT_WINDOW_REQUESTS = 200
MAX_WINDOW_REQUESTS = 100_000
DEFAULT_MIN_RATIO = 0.95
MAX_SHADOWS = 4
MAX_CANARIES = 8
MAX_LABELS = 256
PROGRAMMATIC = (RegexJudgeSpec, JsonSchemaJudgeSpec, LengthJudgeSpec)


@dataclass(frozen=True)
class Validator:
    judge: Check | None  # the programmatic judge, compiled
    labels: frozenset[str]  # case-folded; empty: any
    max_latency_seconds: float  # 0: no limit
    fallback: common_pb2.ModelSpec | None

    def check(self, text: str, latency_seconds: float) -> tuple[bool, str]:
        """Whether an answer passes, and if not, every reason why."""
        failed = []
        if self.max_latency_seconds and latency_seconds > self.max_latency_seconds:
            failed.append(f"took {latency_seconds:.2f} s, over the "
                          f"{self.max_latency_seconds:g} s limit")
        for ok, why in ([label_in(self.labels, text)] if self.labels else []) + (
                [self.judge(text)] if self.judge else []):
            if not ok:
                failed.append(why)
        return not failed, "; ".join(failed) or "passed"


@dataclass(frozen=True)
class LiveJudge:
    """How live answers are scored. The two sides of a comparison are scored on the same
    footing: an LLM or programmatic judge sees the conversation and the answer, never who wrote
    it or another answer; a reference judge (`needs_reference`) takes the answer the alias's
    own target gave the same request as the reference, so that target's answer is scored
    against itself (10: the teacher is what agreement is measured against) and a student's
    score is its agreement with the teacher."""

    judge: JudgeKind
    sample_rate: float  # in (0, 1]
    needs_reference: bool


@dataclass(frozen=True)
class Routing:
    canary: tuple[tuple[gateway_pb2.AliasTarget, int], ...]  # (target, percent)
    shadows: tuple[gateway_pb2.AliasTarget, ...]
    validator: Validator | None
    capture: bool
    redactor: Redactor
    judge: LiveJudge | None = None


@dataclass(frozen=True)
class Progressive:
    steps: tuple[int, ...]  # the student's percent per step; 0 is the shadow step
    window_requests: int
    min_ratio: float


def routing(msg: gateway_pb2.AliasRouting, field: str = "routing") -> Routing:
    """Checks every field of an alias's routing; InvalidArgument names the field."""
    if len(msg.canary) > MAX_CANARIES:
        raise InvalidArgument(f"{field}.canary: at most {MAX_CANARIES} targets")
    for i, weighted in enumerate(msg.canary):
        if not 1 <= weighted.percent <= 100:
            raise InvalidArgument(f"{field}.canary[{i}].percent: must be in [1, 100], got "
                                  f"{weighted.percent}")
        if weighted.target.WhichOneof("target") is None:
            raise InvalidArgument(f"{field}.canary[{i}].target: set job, teacher or upstream")
    total = sum(w.percent for w in msg.canary)
    if total > 100:
        raise InvalidArgument(f"{field}.canary: the percents add up to {total}, over 100")
    if len(msg.shadows) > MAX_SHADOWS:
        raise InvalidArgument(f"{field}.shadows: at most {MAX_SHADOWS}")
    for i, shadow in enumerate(msg.shadows):
        if shadow.WhichOneof("target") is None:
            raise InvalidArgument(f"{field}.shadows[{i}]: set job, teacher or upstream")
    capture = msg.capture
    return Routing(
        canary=tuple((w.target, w.percent) for w in msg.canary),
        shadows=tuple(msg.shadows),
        validator=validator(msg.validator, f"{field}.validator") if msg.HasField(
            "validator") else None,
        capture=not capture.disabled,
        redactor=redactor(list(capture.redact), list(capture.redact_patterns),
                          f"{field}.capture"),
        judge=live_judge(msg.judge, f"{field}.judge") if msg.HasField("judge") else None)


def live_judge(msg: gateway_pb2.LiveJudge, field: str = "judge") -> LiveJudge:
    judge = judge_kind(msg.judge, f"{field}.judge")
    needs_reference = _uses_reference(judge)
    if needs_reference and llm_judges(judge):
        raise InvalidArgument(f"{field}.judge: a live judge cannot combine an LLM judge with a "
                              "reference judge (the LLM would see the teacher's answer and "
                              "score the two sides on different footing): use one of them")
    rate = float_value(msg.sample_rate or 1.0, f"{field}.sample_rate", low=0.0, high=1.0,
                       low_open=True)
    return LiveJudge(judge, rate, needs_reference)


def _uses_reference(judge: JudgeKind) -> bool:
    if isinstance(judge, CompositeJudgeSpec):
        return any(_uses_reference(part.judge) for part in judge.components)
    return isinstance(judge, ReferenceJudgeSpec)


def validator(msg: gateway_pb2.AliasValidator, field: str = "validator") -> Validator:
    judge = None
    if msg.judge.WhichOneof("kind") is not None:
        judge = judge_kind(msg.judge, f"{field}.judge")
        if not _programmatic(judge):
            raise InvalidArgument(f"{field}.judge: a validator runs on every request, so only "
                                  "regex, json_schema, length or a composite of them")
        judge = programmatic_check(judge)
    if len(msg.labels) > MAX_LABELS:
        raise InvalidArgument(f"{field}.labels: at most {MAX_LABELS}")
    labels = frozenset(label.strip().casefold() for label in msg.labels)
    if "" in labels:
        raise InvalidArgument(f"{field}.labels: a label is empty")
    latency = float_value(msg.max_latency_seconds, f"{field}.max_latency_seconds", low=0.0,
                          high=3600.0)
    if judge is None and not labels and not latency:
        raise InvalidArgument(f"{field}: set judge, labels or max_latency_seconds")
    fallback = msg.fallback if msg.HasField("fallback") else None
    if fallback is not None and not fallback.model:
        raise InvalidArgument(f"{field}.fallback.model: required")
    return Validator(judge, labels, latency, fallback)


def _programmatic(judge: JudgeKind) -> bool:
    if isinstance(judge, CompositeJudgeSpec):
        return all(_programmatic(part.judge) for part in judge.components)
    return isinstance(judge, PROGRAMMATIC)


def progressive(msg: gateway_pb2.ProgressivePromotion,
                field: str = "spec.progressive") -> Progressive | None:
    """The promotion plan, or None when progressive promotion is off."""
    if not msg.enabled:
        return None
    percents = tuple(msg.canary_percents) or DEFAULT_CANARY_PERCENTS
    if any(not 1 <= p <= 100 for p in percents) or list(percents) != sorted(set(percents)) \
            or percents[-1] != 100:
        raise InvalidArgument(f"{field}.canary_percents: strictly ascending percents in "
                              f"[1, 100] ending at 100, got {list(percents)}")
    window = msg.window_requests or DEFAULT_WINDOW_REQUESTS
    if not 1 <= window <= MAX_WINDOW_REQUESTS:
        raise InvalidArgument(f"{field}.window_requests: must be in [1, {MAX_WINDOW_REQUESTS}] "
                              f"(0 means {DEFAULT_WINDOW_REQUESTS}), got {msg.window_requests}")
    ratio = float_value(msg.min_ratio or DEFAULT_MIN_RATIO, f"{field}.min_ratio", low=0.0,
                        high=10.0, low_open=True)
    steps = percents if msg.skip_shadow else (0, *percents)
    return Progressive(steps, window, ratio)


def sticky_point(alias: str, key: str) -> float:
    """Where a sticky key falls in [0, 100): the same on every replica, for every version."""
    digest = hashlib.sha256(f"{alias}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def choose(rules: Routing, primary: gateway_pb2.AliasTarget, alias: str, key: str | None,
           rng: random.Random) -> gateway_pb2.AliasTarget:
    """The target that answers a request: canaries take [0, p1), [p1, p1 + p2), ... of the
    points, the primary target the rest. No sticky key: a fresh point from `rng`."""
    point = sticky_point(alias, key) if key else rng.random() * 100
    edge = 0.0
    for target, percent in rules.canary:
        edge += percent
        if point < edge:
            return target
    return primary
