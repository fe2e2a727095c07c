"""Spend: one value type for what calls cost, added with `+`."""

from __future__ import annotations

import pytest

from distill.v1 import common_pb2
from services.common.spend import NOTHING, Spend


def test_addition_adds_every_field_and_leaves_the_operands_alone():
    a = Spend(requests=2, cached_requests=1, input_tokens=10, output_tokens=3, cost_usd=0.25)
    b = Spend(requests=1, input_tokens=5, output_tokens=7, cost_usd=0.5)
    assert a + b == Spend(3, 1, 15, 10, 0.75)
    assert a == Spend(2, 1, 10, 3, 0.25) and b == Spend(1, 0, 5, 7, 0.5)
    assert a + NOTHING == a == NOTHING + a


def test_total_of_many_and_of_none():
    spends = [Spend(requests=1, cost_usd=0.125)] * 4
    assert Spend.total(spends) == Spend(requests=4, cost_usd=0.5)
    assert Spend.total([]) == NOTHING


def test_adding_something_else_is_a_type_error():
    with pytest.raises(TypeError):
        Spend() + common_pb2.Usage(requests=1)


def test_round_trips_through_the_wire_usage():
    usage = common_pb2.Usage(requests=4, cached_requests=2, input_tokens=100, output_tokens=20,
                             cost_usd=0.003)
    assert Spend.of(usage).to_proto() == usage

