"""Summing `Usage` messages (per call → per group → per stage → per job)."""

from __future__ import annotations

from distill.v1 import common_pb2


def add_usage(total: common_pb2.Usage, extra: common_pb2.Usage) -> None:
    """Adds `extra` into `total` in place."""
    total.requests += extra.requests
    total.cached_requests += extra.cached_requests
    total.input_tokens += extra.input_tokens
    total.output_tokens += extra.output_tokens
    total.cost_usd += extra.cost_usd
