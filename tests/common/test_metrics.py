"""Prometheus metrics: the HTTP endpoint `serve()` runs beside gRPC, one registry per service,
and what each service's observers count from its protobuf events."""

from __future__ import annotations

import itertools
import time
import urllib.error
import urllib.request

import pytest

from distill.v1 import (
    common_pb2,
    exporter_pb2,
    gateway_pb2,
    generator_pb2,
    judge_pb2,
    trainer_pb2,
    trainer_pb2_grpc,
)
from services.common.metrics import (
    ExporterMetrics,
    GatewayMetrics,
    GeneratorMetrics,
    JudgeMetrics,
    SchedulerSnapshot,
    TrainerMetrics,
)
from services.common.server import Service, start
from services.common.settings import ServiceSettings
from services.gateway.job_store import JobStore
from services.gateway.settings import GatewaySettings
from services.trainer.server import TrainerService
from services.trainer.settings import TrainerSettings


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def test_metrics_port_defaults_to_grpc_port_plus_1000():
    assert GatewaySettings().metrics_bind_port == 51051
    assert TrainerSettings().metrics_bind_port == 51054
    assert TrainerSettings(port=6000).metrics_bind_port == 7000
    assert TrainerSettings(port=0).metrics_bind_port == 0  # tests: a free port, logged
    assert TrainerSettings(port=6000, metrics_port=9100).metrics_bind_port == 9100
    assert TrainerSettings(port=6000, metrics_port=0).metrics_bind_port == 0


def test_metrics_port_from_env(monkeypatch):
    monkeypatch.setenv("DISTILL_METRICS_PORT", "9000")
    monkeypatch.setenv("DISTILL_TRAINER_METRICS_PORT", "9104")
    assert TrainerSettings().metrics_bind_port == 9104
    assert GatewaySettings().metrics_bind_port == 9000


async def test_each_server_serves_its_own_registry_and_stops_it(caplog):
    caplog.set_level("INFO", logger="distill.server")
    servers = []
    for _ in range(2):  # two trainers in one process: separate registries, no clash
        servicer = TrainerService(TrainerSettings(port=0, capacity=3))
        service = Service.of(trainer_pb2, trainer_pb2_grpc, servicer,
                             metrics=servicer.metrics.registry)
        servers.append((servicer, await start(ServiceSettings(port=0, grace_seconds=0),
                                              [service])))
    (first, one), (_, two) = servers
    assert one.metrics_port != two.metrics_port and 0 not in (one.metrics_port, two.metrics_port)
    slot = first.capacity.acquire("job-1")
    first.metrics.observe(trainer_pb2.TrainResponse(step=trainer_pb2.TrainStep(
        step=1, tokens_per_second=250.0)))
    text_one, text_two = scrape(one.metrics_port), scrape(two.metrics_port)
    assert "distill_trainer_active_trainings 1.0" in text_one
    assert "distill_trainer_active_trainings 0.0" in text_two
    assert "distill_trainer_steps_total 1.0" in text_one
    assert "distill_trainer_steps_total 0.0" in text_two
    assert "distill_trainer_capacity 3.0" in text_one
    assert "distill_trainer_tokens_per_second 250.0" in text_one
    assert "process_resident_memory_bytes" in text_one
    slot.release()
    serving = [r for r in caplog.records if r.getMessage() == "serving"]
    assert {r.metrics_port for r in serving} == {one.metrics_port, two.metrics_port}
    for _, running in servers:
        await running.stop()
    with pytest.raises(urllib.error.URLError):
        scrape(one.metrics_port)


def test_generator_counts_usage_and_retries_by_provider_and_model():
    metrics = GeneratorMetrics()
    observe = metrics.stream("openai", "gpt-4o-mini")
    group = common_pb2.CandidateGroup()
    for cached in (False, True):
        group.candidates.add(usage=common_pb2.Usage(
            requests=1, cached_requests=int(cached), input_tokens=10, output_tokens=4,
            cost_usd=0 if cached else 0.002))
    observe(generator_pb2.GenerateResponse(progress=generator_pb2.GenerateProgress(
        retries=2, rate_limited=1)))
    observe(generator_pb2.GenerateResponse(group=group))
    observe(generator_pb2.GenerateResponse(progress=generator_pb2.GenerateProgress(
        retries=3, rate_limited=1)))  # running totals: only the growth counts

    def value(name, **labels):
        return metrics.registry.get_sample_value(
            name, {"provider": "openai", "model": "gpt-4o-mini", **labels})

    assert value("distill_teacher_requests_total") == 2
    assert value("distill_teacher_cached_requests_total") == 1
    assert value("distill_teacher_tokens_total", direction="input") == 20
    assert value("distill_teacher_tokens_total", direction="output") == 8
    assert value("distill_teacher_cost_usd_total") == pytest.approx(0.002)
    assert value("distill_teacher_retries_total") == 3
    assert value("distill_teacher_rate_limited_total") == 1


def test_judge_scores_histogram_and_calls():
    metrics = JudgeMetrics()
    group = judge_pb2.JudgedGroup(usage=common_pb2.Usage(requests=3, cost_usd=0.01))
    group.candidates.add(score=9.5)
    group.candidates.add(score=2.0)
    group.candidates.add(judge_error="timeout")
    metrics.observe(judge_pb2.JudgeResponse(group=group))
    metrics.observe(judge_pb2.JudgeResponse(group=judge_pb2.JudgedGroup(dropped=True)))
    metrics.observe(judge_pb2.JudgeResponse(summary=judge_pb2.JudgeSummary()))
    get = metrics.registry.get_sample_value
    assert get("distill_judge_score_count") == 2
    assert get("distill_judge_score_sum") == 11.5
    assert get("distill_judge_score_bucket", {"le": "2.0"}) == 1
    assert get("distill_judge_score_bucket", {"le": "9.0"}) == 1
    assert get("distill_judge_calls_total", {"outcome": "ok"}) == 2
    assert get("distill_judge_calls_total", {"outcome": "error"}) == 1
    assert get("distill_judge_groups_total", {"result": "kept"}) == 1
    assert get("distill_judge_groups_total", {"result": "dropped"}) == 1
    assert get("distill_judge_model_requests_total") == 3


def test_trainer_counts_trainings_steps_and_refusals():
    active = [0]
    metrics = TrainerMetrics(1, lambda: active[0])
    for event in (trainer_pb2.TrainResponse(started=trainer_pb2.TrainStarted()),
                  trainer_pb2.TrainResponse(step=trainer_pb2.TrainStep(tokens_per_second=10)),
                  trainer_pb2.TrainResponse(step=trainer_pb2.TrainStep(tokens_per_second=30)),
                  trainer_pb2.TrainResponse(finished=trainer_pb2.TrainFinished())):
        metrics.observe(event)
    metrics.refused()
    active[0] = 1
    get = metrics.registry.get_sample_value
    assert get("distill_trainer_steps_total") == 2
    assert get("distill_trainer_tokens_per_second") == 30
    assert get("distill_trainer_active_trainings") == 1
    for outcome in ("started", "finished", "refused"):
        assert get("distill_trainer_trainings_total", {"outcome": outcome}) == 1


def test_exporter_times_each_stage(monkeypatch):
    clock = itertools.chain([0.0, 0.0, 2.0, 5.0], itertools.repeat(20.0)).__next__
    monkeypatch.setattr("services.common.metrics.time.monotonic", clock)
    metrics = ExporterMetrics()
    timer = metrics.stream()  # t=0

    def progress(stage):
        return exporter_pb2.ExportResponse(progress=exporter_pb2.ExportProgress(stage=stage))

    timer.observe(progress(exporter_pb2.EXPORT_STAGE_ADAPTER))  # t=0
    timer.observe(progress(exporter_pb2.EXPORT_STAGE_MERGE))  # t=2
    timer.observe(progress(exporter_pb2.EXPORT_STAGE_CONVERT))  # t=5
    timer.observe(progress(exporter_pb2.EXPORT_STAGE_CONVERT))  # the same stage: no change
    timer.observe(exporter_pb2.ExportResponse(manifest=exporter_pb2.ExportManifest(
        complete=True)))  # t=20
    get = metrics.registry.get_sample_value

    def seconds(stage):
        return get("distill_export_stage_duration_seconds_sum", {"stage": stage})

    assert (seconds("adapter"), seconds("merge"), seconds("convert")) == (2.0, 3.0, 15.0)
    assert get("distill_exports_total", {"outcome": "complete"}) == 1
    metrics.stream().failed()
    assert get("distill_exports_total", {"outcome": "error"}) == 1


def test_gateway_jobs_by_state_and_scheduler(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    for i, state in enumerate([gateway_pb2.JOB_STATE_TRAINING, gateway_pb2.JOB_STATE_TRAINING,
                               gateway_pb2.JOB_STATE_SUCCEEDED]):
        job = gateway_pb2.Job(name=f"jobs/j{i}", state=state)
        job.create_time.FromSeconds(int(time.time()) + i)
        store.create_job(job)
    snapshot = SchedulerSnapshot(queue_depth=2, replicas=3, replicas_busy=1,
                                 replicas_unreachable=1, trainings_running=1,
                                 requeues={"busy": 4})
    metrics = GatewayMetrics(store.count_by_state, lambda: snapshot)
    get = metrics.registry.get_sample_value
    assert get("distill_jobs", {"state": "training"}) == 2
    assert get("distill_jobs", {"state": "succeeded"}) == 1
    assert get("distill_jobs", {"state": "failed"}) == 0
    assert get("distill_training_queue_depth") == 2
    assert get("distill_trainer_replicas") == 3
    assert get("distill_trainer_replicas_busy") == 1
    assert get("distill_trainer_replicas_unreachable") == 1
    assert get("distill_trainings_running") == 1
    assert get("distill_training_requeues_total", {"reason": "busy"}) == 4
    assert get("distill_training_requeues_total", {"reason": "replica_lost"}) == 0
