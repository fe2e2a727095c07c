"""benchmarks/router.py's own logic: the trace counters it reads off the router's metrics page,
and which round of a repeated load it reports."""

from __future__ import annotations

from prometheus_client import generate_latest

from benchmarks.router import Load, rounds_figures, trace_counts
from services.common.metrics import RouterMetrics


def test_trace_counts_reads_the_routers_own_counter():
    metrics = RouterMetrics(engines_loaded=lambda: 0, engine_restarts=lambda: 0)
    metrics.traced("written", 1200)
    metrics.traced("dropped", 3)
    metrics.answered("bot", 1, "student", 5, 7, 0.0, 0.5)  # other counters are not traces
    page = generate_latest(metrics.registry).decode()
    assert trace_counts(lambda: page) == {"written": 1200, "dropped": 3}


def test_rounds_report_the_median_round_and_every_failure():
    slow = Load(elapsed=10.0, latencies=[1.0] * 10, failures=["APIConnectionError: x"])
    fast = Load(elapsed=2.0, latencies=[0.2] * 10)
    middle = Load(elapsed=5.0, latencies=[0.5] * 10)
    figures = rounds_figures("router", [slow, fast, middle])
    assert figures["router_rps"] == 2.0  # the middle round: 10 answers in 5 s
    assert figures["router_p50_ms"] == 500.0
    assert figures["router_rps_rounds"] == [1.0, 5.0, 2.0]
    assert figures["router_failed"] == 1
