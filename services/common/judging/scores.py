"""What a judge says about one candidate."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.providers import Paid
from services.common.specs.judge import MAX_SCORE
from services.common.spend import NOTHING, Spend


@dataclass(frozen=True)
class Score:
    """0..10 overall (None when the judge could not score: `error` says why)."""

    value: float | None
    criteria: dict[str, float] = field(default_factory=dict)
    rationale: str = ""
    error: str = ""
    spend: Spend = NOTHING  # what the judge's model calls for this score cost
    # Those of its calls answered from the cache: who paid for each, and what it cost then.
    cached: tuple[Paid, ...] = ()

    @classmethod
    def failed(cls, error: str, spend: Spend = NOTHING, cached: tuple[Paid, ...] = ()) -> Score:
        return cls(None, error=error, spend=spend, cached=cached)

    @property
    def ok(self) -> bool:
        return self.value is not None


def binary(passed: bool, rationale: str) -> Score:
    return Score(MAX_SCORE if passed else 0.0, rationale=rationale)
