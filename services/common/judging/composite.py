"""A weighted blend of judges with hard gates (e.g. invalid JSON scores 0 whatever the LLM says)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from distill.v1.common_pb2 import Prompt
from services.common.judging.scores import Score
from services.common.spend import Spend


class Judge(Protocol):
    async def score(self, prompt: Prompt, text: str) -> Score: ...


@dataclass(frozen=True)
class Component:
    name: str
    judge: Judge
    weight: float
    gate: bool = False
    gate_min_score: float = 0.0


@dataclass(frozen=True)
class CompositeJudge:
    components: tuple[Component, ...]

    async def score(self, prompt: Prompt, text: str) -> Score:
        scores = await asyncio.gather(*(c.judge.score(prompt, text) for c in self.components))
        spend = Spend.total(s.spend for s in scores)
        cached = tuple(paid for s in scores for paid in s.cached)
        per_component = {c.name: s.value for c, s in zip(self.components, scores, strict=True)
                         if s.ok}
        # A failed gate decides alone, even when another component could not score.
        for component, score in zip(self.components, scores, strict=True):
            if component.gate and score.ok and score.value < component.gate_min_score:
                return Score(0.0, per_component,
                             f"gate {component.name} failed: {score.rationale}", spend=spend,
                             cached=cached)
        errors = [f"{c.name}: {s.error}" for c, s in zip(self.components, scores, strict=True)
                  if not s.ok]
        if errors:
            return Score.failed("; ".join(errors), spend, cached)
        total_weight = sum(c.weight for c in self.components)
        blended = sum(c.weight * s.value for c, s in zip(self.components, scores, strict=True))
        rationale = "; ".join(f"{c.name}: {s.rationale}"
                              for c, s in zip(self.components, scores, strict=True) if s.rationale)
        return Score(blended / total_weight, per_component, rationale, spend=spend,
                     cached=cached)
