"""Issue 19, item 5: metrics (served without a token) listen on their own address, loopback
unless set, and a request cannot grow the number of series."""

from __future__ import annotations

import urllib.request

import pytest

from distill.v1 import common_pb2, generator_pb2
from services.common.metrics import GeneratorMetrics, MetricsServer
from services.generator.settings import GeneratorSettings

# Every test here: a connection beyond loopback fails it (conftest.py).
pytestmark = pytest.mark.usefixtures("loopback_only")


def group_event(tokens: int) -> generator_pb2.GenerateResponse:
    usage = common_pb2.Usage(requests=1, input_tokens=tokens, output_tokens=tokens)
    return generator_pb2.GenerateResponse(group=common_pb2.CandidateGroup(
        candidates=[common_pb2.Candidate(text="x", usage=usage)]))


def model_labels(metrics: GeneratorMetrics) -> set[str]:
    return {sample.labels["model"] for family in metrics.registry.collect()
            for sample in family.samples if "model" in sample.labels}


def test_model_labels_are_a_fixed_set_or_other():
    metrics = GeneratorMetrics()
    for i in range(200):  # a caller making up model names
        metrics.stream("openai", f"attacker-model-{i}")(group_event(1))
    metrics.stream("openai", "/models/some/path.gguf")(group_event(1))
    metrics.stream("openai", "gpt-4o-mini")(group_event(1))
    assert model_labels(metrics) == {"other", "gpt-4o-mini"}


def test_metrics_listen_on_loopback_unless_set(monkeypatch):
    monkeypatch.setenv("DISTILL_HOST", "0.0.0.0")  # the gRPC port opened up...
    settings = GeneratorSettings()
    assert settings.host == "0.0.0.0" and settings.metrics_host == "127.0.0.1"  # ...not these
    monkeypatch.setenv("DISTILL_METRICS_HOST", "::1")
    assert GeneratorSettings().metrics_host == "::1"


def test_the_metrics_server_binds_the_address_it_is_given():
    server = MetricsServer("127.0.0.1", 0, [GeneratorMetrics().registry])
    try:
        assert server.host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            assert b"process_cpu_seconds_total" in r.read()
    finally:
        server.stop()
