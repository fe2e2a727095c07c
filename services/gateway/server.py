"""gRPC servicer of the gateway: thin; jobs, aliases, uploads and estimates live beside it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from distill.v1 import gateway_pb2, gateway_pb2_grpc
from services.common.metrics import GatewayMetrics
from services.common.server import Service
from services.common.traces.layout import DEFAULT_PROJECT
from services.gateway import trace_datasets
from services.gateway.alias_report import alias_window_days, build_alias_report
from services.gateway.aliases import Aliases
from services.gateway.deletion import delete_job
from services.gateway.events import JobEvents, LogRecorder
from services.gateway.job_metrics import job_metrics
from services.gateway.job_store import JobStore
from services.gateway.jobs import Jobs
from services.gateway.lifecycle import Lifecycle
from services.gateway.runner import JobRunner
from services.gateway.settings import GatewaySettings
from services.gateway.stages import StageClients, auth_metadata
from services.gateway.trainer_pool import TrainerPool
from services.gateway.uploads import download_artifact, upload_dataset
from services.gateway.watch import JobHub
from services.gateway.writer_lock import WriterLock


class GatewayService(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, jobs: Jobs, aliases: Aliases, settings: GatewaySettings,
                 events: JobEvents) -> None:
        self.jobs = jobs
        self.aliases = aliases
        self.settings = settings
        self.events = events

    async def Estimate(self, request, context):  # noqa: N802
        return await self.jobs.estimate(request)

    async def Distill(self, request, context):  # noqa: N802
        return gateway_pb2.DistillResponse(job=await self.jobs.distill(request))

    async def GetJob(self, request, context):  # noqa: N802
        return gateway_pb2.GetJobResponse(job=self.jobs.get(request.name))

    async def ListJobs(self, request, context):  # noqa: N802
        return self.jobs.list(request)

    async def WatchJob(self, request, context):  # noqa: N802
        async for job in self.jobs.watch(request.name):
            yield gateway_pb2.WatchJobResponse(job=job)

    async def CancelJob(self, request, context):  # noqa: N802
        return gateway_pb2.CancelJobResponse(job=await self.jobs.cancel(request.name))

    async def DeleteJob(self, request, context):  # noqa: N802
        deleted = await delete_job(request.name, self.jobs.store, self.events, self.aliases,
                                   self.jobs.artifacts)
        return gateway_pb2.DeleteJobResponse(artifacts_deleted=deleted)

    async def ListJobEvents(self, request, context):  # noqa: N802
        events, token = self.events.list(self.jobs.get(request.parent), request.page_size,
                                         request.page_token)
        return gateway_pb2.ListJobEventsResponse(events=events, next_page_token=token)

    async def GetJobMetrics(self, request, context):  # noqa: N802
        return await asyncio.to_thread(job_metrics, self.jobs.get(request.name),
                                       self.jobs.artifacts)

    async def UploadDataset(self, request_iterator, context):  # noqa: N802
        return await upload_dataset(request_iterator, self.jobs.artifacts,
                                    self.settings.max_upload_bytes)

    async def DownloadArtifact(self, request, context):  # noqa: N802
        async for part in download_artifact(request.uri, self.jobs.artifacts):
            yield part

    async def ListTraceDays(self, request, context):  # noqa: N802
        return await asyncio.to_thread(trace_datasets.list_days, self.jobs.artifacts,
                                       DEFAULT_PROJECT, request.alias)

    async def CreateDatasetFromTraces(self, request, context):  # noqa: N802
        return await asyncio.to_thread(trace_datasets.create, self.jobs.artifacts, request,
                                       DEFAULT_PROJECT, time.time())

    async def BuildAliasReport(self, request, context):  # noqa: N802
        alias = self.aliases.get(request.name)
        report = await asyncio.to_thread(
            build_alias_report, alias, self.jobs.artifacts, DEFAULT_PROJECT, time.time(),
            alias_window_days(request.window_days))
        return gateway_pb2.BuildAliasReportResponse(report=report)

    async def SetAlias(self, request, context):  # noqa: N802
        alias = self.aliases.set(request.name, request.target, request.expected_version,
                                 request.routing if request.HasField("routing") else None)
        return gateway_pb2.SetAliasResponse(alias=alias)

    async def GetAlias(self, request, context):  # noqa: N802
        return gateway_pb2.GetAliasResponse(alias=self.aliases.get(request.name))

    async def ListAliases(self, request, context):  # noqa: N802
        aliases, token = self.aliases.list(request.page_size, request.page_token)
        return gateway_pb2.ListAliasesResponse(aliases=aliases, next_page_token=token)

    async def RollbackAlias(self, request, context):  # noqa: N802
        alias = self.aliases.rollback(request.name, request.to_version, request.expected_version)
        return gateway_pb2.RollbackAliasResponse(alias=alias)


def build(settings: GatewaySettings) -> Sequence[Service]:
    writer = WriterLock(settings.db_path)  # before the store: a second gateway touches nothing
    events = JobEvents(settings.db_path)
    store = JobStore(settings.db_path, on_save=events.record)
    recorder = LogRecorder(events)
    logging.getLogger("distill.gateway").addHandler(recorder)
    artifacts = settings.open_store()
    hub = JobHub()
    aliases = Aliases(store)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    trainers = TrainerPool(settings.trainer_targets,
                           status_timeout=settings.trainer_status_timeout_seconds,
                           interval=settings.trainer_schedule_interval_seconds,
                           max_moves=settings.trainer_max_moves, metadata=auth_metadata(token))
    clients = StageClients.connect(settings.generator_address, settings.judge_address,
                                   trainers, settings.exporter_address,
                                   settings.stage_idle_timeout_seconds, token,
                                   connect_seconds=settings.stage_connect_timeout_seconds,
                                   attempts=settings.stage_attempts)
    metrics = GatewayMetrics(store.count_by_state, trainers.snapshot)

    lifecycle = Lifecycle(store, hub)
    runner = JobRunner(lifecycle, clients, artifacts, aliases, settings.trainer_wait_seconds,
                       serving_usd_per_hour=settings.serving_usd_per_hour)
    jobs = Jobs(lifecycle, hub, runner, clients, artifacts, settings.cache_dir)
    servicer = GatewayService(jobs, aliases, settings, events)

    rollout_checks: list[asyncio.Task] = []

    async def shutdown() -> None:
        for task in rollout_checks:
            task.cancel()
        hub.close()
        await runner.shutdown()  # jobs stay non-terminal: the next gateway resumes them

    def started() -> None:
        trainers.start()  # the replica metrics from the start, not from the first training
        jobs.resume_unfinished()
        rollout_checks.append(asyncio.get_running_loop().create_task(
            runner.rollouts.run(settings.rollout_check_seconds)))

    async def stopped() -> None:
        await clients.close()  # the stage channels and the trainer pool's scheduler
        logging.getLogger("distill.gateway").removeHandler(recorder)
        store.close()
        events.close()
        writer.release()

    return [Service.of(gateway_pb2, gateway_pb2_grpc, servicer, on_start=started,
                       on_shutdown=shutdown, on_stopped=stopped, metrics=metrics.registry)]
