"""What calls to paid models cost: one value type, added with `+` (per call → per group → per
stage → per job). The wire form is `distill.v1.Usage`; `Spend.of` and `to_proto` convert."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

from distill.v1 import common_pb2


@dataclass(frozen=True)
class Spend:
    # Calls answered, including those served from a cache...
    requests: int = 0
    # ...of which from a cache: nothing paid.
    cached_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return self._fieldwise(other, operator.add)

    def __sub__(self, other: Spend) -> Spend:
        return self._fieldwise(other, operator.sub)

    def _fieldwise(self, other: Spend, op: Callable[[float, float], float]) -> Spend:
        if not isinstance(other, Spend):
            return NotImplemented
        return Spend(*(op(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)))

    @classmethod
    def total(cls, spends: Iterable[Spend]) -> Spend:
        return sum(spends, cls())

    @classmethod
    def of(cls, usage: common_pb2.Usage) -> Spend:
        return cls(usage.requests, usage.cached_requests, usage.input_tokens,
                   usage.output_tokens, usage.cost_usd)

    def to_proto(self) -> common_pb2.Usage:
        return common_pb2.Usage(requests=self.requests, cached_requests=self.cached_requests,
                                input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                                cost_usd=self.cost_usd)


NOTHING = Spend()  # the start of every sum (and a default: Spend is immutable)
