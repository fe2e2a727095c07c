"""Prometheus metrics: one registry per service, served over HTTP next to the gRPC port.

Every metric of the suite is defined here, so the names the dashboards, alerts and the trainer
autoscaler (`distill_training_queue_depth`) depend on are in one place. Services observe at their
seams only (the servicer's stream of protobuf events, the gateway's job store and trainer pool);
business code never calls into this module.

Each service gets its own `CollectorRegistry` (never prometheus_client's global one), so several
services in one test process do not clash. `serve()` starts and stops the HTTP endpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from distill.v1 import exporter_pb2, gateway_pb2, generator_pb2, judge_pb2, trainer_pb2
from services.common.errors import DistillError
from services.common.models import get_model

log = logging.getLogger("distill.metrics")

__all__ = [
    "ExporterMetrics",
    "GatewayMetrics",
    "GeneratorMetrics",
    "JudgeMetrics",
    "MetricsServer",
    "RouterMetrics",
    "TrainerMetrics",
    "new_registry",
]


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


class MetricsServer:
    """`/metrics` (any path, in fact) over HTTP on its own thread."""

    def __init__(self, host: str, port: int, registries: Iterable[CollectorRegistry]) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds
        for registry in registries:
            self.registry.register(registry)  # a registry is a collector of its metrics
        self._httpd, self._thread = start_http_server(port, host, self.registry)
        self.host = host
        self.port: int = self._httpd.server_port

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def model_label(model: str) -> str:
    """A request names its model freely: as a label only a registry model's name, else
    "other", so that requests cannot grow the number of series without bound."""
    try:
        return get_model(model).name
    except DistillError:
        return "other"


def _zero(counter: Counter, *values: str) -> None:
    """Creates the children of a one-label counter, so each series exists (at 0) from start."""
    for value in values:
        counter.labels(value)


# --- gateway ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SchedulerSnapshot:
    """What the gateway's trainer pool reports at scrape time (see gateway/trainer_pool.py)."""

    queue_depth: int
    replicas: int
    replicas_busy: int
    replicas_unreachable: int
    trainings_running: int
    requeues: Mapping[str, int]


class GatewayMetrics:
    """Read at scrape time from the job store and the trainer pool; nothing to call per event."""

    def __init__(self, count_jobs: Callable[[], Mapping[int, int]],
                 scheduler: Callable[[], SchedulerSnapshot]) -> None:
        self.registry = new_registry()
        self._count_jobs = count_jobs
        self._scheduler = scheduler
        self.registry.register(self)

    def describe(self) -> list[Metric]:
        return []  # names are only known from collect(); nothing to check for clashes

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("distill_jobs", "Jobs in the job store by state.",
                                 labels=["state"])
        counts = self._count_jobs()
        for name, value in gateway_pb2.JobState.items():
            if value:
                jobs.add_metric([name.removeprefix("JOB_STATE_").lower()], counts.get(value, 0))
        yield jobs
        s = self._scheduler()
        for name, text, value in (
            ("distill_training_queue_depth",
             "Training tasks waiting for a trainer replica (FIFO).", s.queue_depth),
            ("distill_trainer_replicas",
             "Trainer replicas known (DNS or configured list).", s.replicas),
            ("distill_trainer_replicas_busy",
             "Trainer replicas with no free training slot.", s.replicas_busy),
            ("distill_trainer_replicas_unreachable",
             "Trainer replicas that did not answer their last status check.",
             s.replicas_unreachable),
            ("distill_trainings_running",
             "Trainings the gateway has running on trainer replicas.", s.trainings_running),
        ):
            yield GaugeMetricFamily(name, text, value=value)
        requeues = CounterMetricFamily(
            "distill_training_requeues", "Training tasks put back in the queue, by reason "
            "(busy: RESOURCE_EXHAUSTED; replica_lost: the stream broke).", labels=["reason"])
        for reason in ("busy", "replica_lost"):
            requeues.add_metric([reason], s.requeues.get(reason, 0))
        yield requeues


# --- generator -------------------------------------------------------------------------------

class GeneratorMetrics:
    def __init__(self) -> None:
        self.registry = r = new_registry()
        labels = ["provider", "model"]
        self.requests = Counter("distill_teacher_requests", "Teacher samples requested "
                                "(cached ones included).", labels, registry=r)
        self.cached = Counter("distill_teacher_cached_requests",
                              "Teacher samples answered from the teacher cache.", labels,
                              registry=r)
        self.tokens = Counter("distill_teacher_tokens", "Teacher tokens, by direction.",
                              [*labels, "direction"], registry=r)
        self.cost = Counter("distill_teacher_cost_usd", "Teacher spend in USD.", labels,
                            registry=r)
        self.retries = Counter("distill_teacher_retries", "Teacher calls retried.", labels,
                               registry=r)
        self.rate_limited = Counter("distill_teacher_rate_limited",
                                    "Teacher responses that were HTTP 429.", labels, registry=r)

    def stream(self, provider: str, model: str) -> Callable[[generator_pb2.GenerateResponse],
                                                            None]:
        """An observer for one Generate stream (progress carries running totals)."""
        labels = (provider or "unknown", model_label(model))
        seen = {"retries": 0, "rate_limited": 0}

        def observe(event: generator_pb2.GenerateResponse) -> None:
            kind = event.WhichOneof("event")
            if kind == "group":
                for candidate in event.group.candidates:
                    usage = candidate.usage
                    self.requests.labels(*labels).inc(usage.requests)
                    self.cached.labels(*labels).inc(usage.cached_requests)
                    self.tokens.labels(*labels, "input").inc(usage.input_tokens)
                    self.tokens.labels(*labels, "output").inc(usage.output_tokens)
                    self.cost.labels(*labels).inc(usage.cost_usd)
            elif kind == "progress":
                for name, counter in (("retries", self.retries),
                                      ("rate_limited", self.rate_limited)):
                    total = getattr(event.progress, name)
                    if total > seen[name]:
                        counter.labels(*labels).inc(total - seen[name])
                        seen[name] = total

        return observe


# --- judge -----------------------------------------------------------------------------------

class JudgeMetrics:
    def __init__(self) -> None:
        self.registry = r = new_registry()
        self.score = Histogram("distill_judge_score", "Scores (0..10) the judge gave candidates.",
                               buckets=[float(b) for b in range(11)], registry=r)
        self.calls = Counter("distill_judge_calls", "Candidates judged, by outcome.", ["outcome"],
                             registry=r)
        self.groups = Counter("distill_judge_groups", "Prompts judged, by result.", ["result"],
                              registry=r)
        _zero(self.calls, "ok", "error")
        _zero(self.groups, "kept", "dropped")
        self.model_requests = Counter("distill_judge_model_requests",
                                      "Judge model calls (LLM judges only).", registry=r)
        self.cost = Counter("distill_judge_cost_usd", "Judge model spend in USD.", registry=r)

    def observe(self, event: judge_pb2.JudgeResponse) -> None:
        if not event.HasField("group"):
            return
        group = event.group
        for candidate in group.candidates:
            if candidate.HasField("score"):
                self.score.observe(candidate.score)
                self.calls.labels("ok").inc()
            else:
                self.calls.labels("error").inc()
        self.groups.labels("dropped" if group.dropped else "kept").inc()
        self.model_requests.inc(group.usage.requests)
        self.cost.inc(group.usage.cost_usd)


# --- trainer ---------------------------------------------------------------------------------

class TrainerMetrics:
    def __init__(self, capacity: int, active: Callable[[], int]) -> None:
        self.registry = r = new_registry()
        Gauge("distill_trainer_capacity", "Trainings this replica runs at once.",
              registry=r).set(capacity)
        Gauge("distill_trainer_active_trainings", "Trainings running on this replica now.",
              registry=r).set_function(active)
        self.tokens_per_second = Gauge("distill_trainer_tokens_per_second",
                                       "Training throughput of the latest step.", registry=r)
        self.steps = Counter("distill_trainer_steps", "Optimizer steps taken.", registry=r)
        self.trainings = Counter("distill_trainer_trainings",
                                 "Train calls by outcome (started, finished, refused: at "
                                 "capacity).", ["outcome"], registry=r)
        _zero(self.trainings, "started", "finished", "refused")

    def refused(self) -> None:
        self.trainings.labels("refused").inc()

    def observe(self, event: trainer_pb2.TrainResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "step":
            self.steps.inc()
            self.tokens_per_second.set(event.step.tokens_per_second)
        elif kind in ("started", "finished"):
            self.trainings.labels(kind).inc()


# --- exporter --------------------------------------------------------------------------------

class ExporterMetrics:
    def __init__(self) -> None:
        self.registry = r = new_registry()
        self.stage_seconds = Histogram(
            "distill_export_stage_duration_seconds", "Time spent in each export stage.",
            ["stage"], buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r)
        self.exports = Counter("distill_exports", "Exports by outcome (complete, incomplete, "
                               "error).", ["outcome"], registry=r)
        _zero(self.exports, "complete", "incomplete", "error")

    def stream(self) -> _ExportTimer:
        return _ExportTimer(self)


class _ExportTimer:
    """Times the stages of one Export stream from its progress events: a stage lasts from its
    first event to the next event of another stage (or the manifest)."""

    def __init__(self, metrics: ExporterMetrics) -> None:
        self._metrics = metrics
        self._stage: str | None = None
        self._since = time.monotonic()

    def _close_stage(self) -> None:
        now = time.monotonic()
        if self._stage is not None:
            self._metrics.stage_seconds.labels(self._stage).observe(now - self._since)
        self._stage, self._since = None, now

    def observe(self, event: exporter_pb2.ExportResponse) -> None:
        if event.HasField("progress"):
            stage = exporter_pb2.ExportStage.Name(event.progress.stage)
            stage = stage.removeprefix("EXPORT_STAGE_").lower()
            if stage != self._stage:
                self._close_stage()
                self._stage = stage
        else:
            self._close_stage()
            self._metrics.exports.labels(
                "complete" if event.manifest.complete else "incomplete").inc()

    def failed(self) -> None:
        self._close_stage()
        self._metrics.exports.labels("error").inc()


# --- router ----------------------------------------------------------------------------------

class RouterMetrics:
    """Per alias, version and target kind: requests by outcome, latency, tokens, cost; and the
    engines. Requests whose alias did not resolve count under alias "", so that callers cannot
    mint label values."""

    def __init__(self, engines_loaded: Callable[[], int],
                 engine_restarts: Callable[[], int]) -> None:
        self.registry = r = new_registry()
        labels = ["alias", "version", "target"]
        self.requests = Counter("distill_router_requests", "Chat requests by outcome (a gRPC "
                                "status name: OK, NOT_FOUND, UNAVAILABLE, ...).",
                                [*labels, "code"], registry=r)
        self.latency = Histogram(
            "distill_router_request_duration_seconds", "Time to the whole answer.", labels,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.tokens = Counter("distill_router_tokens", "Tokens by direction (prompt, "
                              "completion).", [*labels, "direction"], registry=r)
        self.cost = Counter("distill_router_cost_usd", "What teacher and upstream calls cost.",
                            labels, registry=r)
        Gauge("distill_router_engines_loaded", "Engine processes running now.",
              registry=r).set_function(engines_loaded)
        self.fallbacks = Counter("distill_router_fallbacks", "Student answers that failed the "
                                 "alias's validator and were answered by its teacher.",
                                 ["alias", "version"], registry=r)
        self.shadow_skips = Counter("distill_router_shadow_skipped", "Shadow calls not made: "
                                    "the shadow limit was reached.", ["alias", "version"],
                                    registry=r)
        self.traces = Counter("distill_router_traces", "Traces by outcome: written, dropped "
                              "(the queue was full) or failed (the store refused them).",
                              ["outcome"], registry=r)
        self.judged = Counter("distill_router_judged", "Sampled answers by what the live judge "
                              "did: scored, failed (it could not score), dropped (its queue was "
                              "full) or unscored (a reference judge without the teacher's "
                              "answer to the same request).", ["alias", "version", "outcome"],
                              registry=r)
        self.judge_cost = Counter("distill_router_judge_cost_usd", "What the live judge's model "
                                  "calls cost.", ["alias", "version"], registry=r)
        self._restarts = engine_restarts
        r.register(self)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily("distill_router_engine_restarts",
                                  "Engines started again after they exited.",
                                  value=self._restarts())

    def answered(self, alias: str, version: int, target: str, prompt_tokens: int,
                 completion_tokens: int, cost_usd: float, seconds: float) -> None:
        labels = (alias, str(version), target)
        self.requests.labels(*labels, "OK").inc()
        self.latency.labels(*labels).observe(seconds)
        self.tokens.labels(*labels, "prompt").inc(prompt_tokens)
        self.tokens.labels(*labels, "completion").inc(completion_tokens)
        self.cost.labels(*labels).inc(cost_usd)

    def fell_back(self, alias: str, version: int) -> None:
        self.fallbacks.labels(alias, str(version)).inc()

    def shadow_skipped(self, alias: str, version: int) -> None:
        self.shadow_skips.labels(alias, str(version)).inc()

    def judge_outcome(self, alias: str, version: int, outcome: str, cost_usd: float = 0.0
                      ) -> None:
        self.judged.labels(alias, str(version), outcome).inc()
        if cost_usd:
            self.judge_cost.labels(alias, str(version)).inc(cost_usd)

    def traced(self, outcome: str, traces: int) -> None:
        self.traces.labels(outcome).inc(traces)

    def failed(self, alias: str, version: int, target: str, code: str) -> None:
        self.requests.labels(alias, str(version) if version else "", target, code).inc()
