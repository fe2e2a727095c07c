"""gRPC servicers of the gateway: thin; jobs, aliases, uploads and estimates live beside them.

Every call acts for the caller's project (services/common/auth.py): the interceptor resolved
the bearer key to it before the servicer runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from distill.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
)
from services.common.auth import current_principal, project_name
from services.common.errors import PermissionDenied
from services.common.metrics import GatewayMetrics
from services.common.server import Service
from services.gateway import trace_datasets
from services.gateway.alias_feed import AliasFeed
from services.gateway.alias_report import alias_window_days, build_alias_report
from services.gateway.aliases import Aliases
from services.gateway.api_keys import ApiKeys, GatewayAuth
from services.gateway.deletion import delete_job
from services.gateway.events import JobEvents, LogRecorder
from services.gateway.job_metrics import job_metrics
from services.gateway.job_slots import JobSlots
from services.gateway.job_store import JobStore
from services.gateway.jobs import Jobs
from services.gateway.lifecycle import Lifecycle
from services.gateway.retention import DAY, Retention, delete_dataset, sweep_periodically
from services.gateway.runner import JobRunner
from services.gateway.settings import GatewaySettings
from services.gateway.stages import StageClients, auth_metadata
from services.gateway.trainer_pool import TrainerPool
from services.gateway.uploads import download_artifact, upload_dataset
from services.gateway.watch import JobHub
from services.gateway.writer_lock import WriterLock


class GatewayService(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, jobs: Jobs, aliases: Aliases, settings: GatewaySettings,
                 events: JobEvents, alias_feed: AliasFeed) -> None:
        self.jobs = jobs
        self.aliases = aliases
        self.alias_feed = alias_feed
        self.settings = settings
        self.events = events

    async def Estimate(self, request, context):  # noqa: N802
        return await self.jobs.estimate(request, _project())

    async def Distill(self, request, context):  # noqa: N802
        return gateway_pb2.DistillResponse(job=await self.jobs.distill(request, _project()))

    async def GetJob(self, request, context):  # noqa: N802
        return gateway_pb2.GetJobResponse(job=self.jobs.get(request.name, _project()))

    async def ListJobs(self, request, context):  # noqa: N802
        return self.jobs.list(request, _project())

    async def WatchJob(self, request, context):  # noqa: N802
        async for job in self.jobs.watch(request.name, _project()):
            yield gateway_pb2.WatchJobResponse(job=job)

    async def CancelJob(self, request, context):  # noqa: N802
        return gateway_pb2.CancelJobResponse(job=await self.jobs.cancel(request.name, _project()))

    async def DeleteJob(self, request, context):  # noqa: N802
        deleted = await delete_job(request.name, _project(), self.jobs.store, self.events,
                                   self.aliases, self.jobs.artifacts)
        return gateway_pb2.DeleteJobResponse(artifacts_deleted=deleted.artifacts,
                                             cache_entries_deleted=deleted.cache_entries)

    async def ListJobEvents(self, request, context):  # noqa: N802
        events, token = self.events.list(self.jobs.get(request.parent, _project()),
                                         request.page_size, request.page_token)
        return gateway_pb2.ListJobEventsResponse(events=events, next_page_token=token)

    async def GetJobMetrics(self, request, context):  # noqa: N802
        return await asyncio.to_thread(job_metrics, self.jobs.get(request.name, _project()),
                                       self.jobs.artifacts)

    async def UploadDataset(self, request_iterator, context):  # noqa: N802
        return await upload_dataset(request_iterator, self.jobs.artifacts,
                                    self.settings.max_upload_bytes, _project())

    async def DeleteDataset(self, request, context):  # noqa: N802
        deleted = await asyncio.to_thread(delete_dataset, request.uri, _project(),
                                          self.jobs.store, self.jobs.artifacts)
        return gateway_pb2.DeleteDatasetResponse(artifacts_deleted=deleted)

    async def DownloadArtifact(self, request, context):  # noqa: N802
        async for part in download_artifact(request.uri, self.jobs.artifacts, _project(),
                                            self.jobs.store):
            yield part

    async def ListTraceDays(self, request, context):  # noqa: N802
        return await asyncio.to_thread(trace_datasets.list_days, self.jobs.artifacts,
                                       _project(), request.alias)

    async def CreateDatasetFromTraces(self, request, context):  # noqa: N802
        return await asyncio.to_thread(trace_datasets.create, self.jobs.artifacts, request,
                                       _project(), time.time())

    async def BuildAliasReport(self, request, context):  # noqa: N802
        project = _project()
        alias = self.aliases.get(request.name, project)
        report = await asyncio.to_thread(
            build_alias_report, alias, self.jobs.artifacts, project, time.time(),
            alias_window_days(request.window_days))
        return gateway_pb2.BuildAliasReportResponse(report=report)

    async def SetAlias(self, request, context):  # noqa: N802
        alias = self.aliases.set(request.name, request.target, request.expected_version,
                                 _project(),
                                 request.routing if request.HasField("routing") else None)
        return gateway_pb2.SetAliasResponse(alias=alias)

    async def GetAlias(self, request, context):  # noqa: N802
        return gateway_pb2.GetAliasResponse(alias=self.aliases.get(request.name, _project()))

    async def ListAliases(self, request, context):  # noqa: N802
        aliases, token = self.aliases.list(request.page_size, request.page_token, _project())
        return gateway_pb2.ListAliasesResponse(aliases=aliases, next_page_token=token)

    async def RollbackAlias(self, request, context):  # noqa: N802
        alias = self.aliases.rollback(request.name, request.to_version, request.expected_version,
                                      _project())
        return gateway_pb2.RollbackAliasResponse(alias=alias)

    async def WatchAliases(self, request, context):  # noqa: N802
        # The admin key and the internal token (the router) see every project's aliases.
        principal = current_principal()
        project = None if principal.admin or principal.internal else _project()
        async for response in self.alias_feed.watch(request.resume_after, project):
            yield response


def _project() -> str:
    principal = current_principal()
    if principal.internal:
        raise PermissionDenied("the internal token acts in no project: it is for the suite's "
                               "own calls (DirectoryService, WatchAliases), not a user's key")
    return principal.project


class DirectoryService(directory_pb2_grpc.DirectoryServiceServicer):
    """The router's questions: who a caller is, and a project's aliases."""

    def __init__(self, auth: GatewayAuth, aliases: Aliases) -> None:
        self.auth = auth
        self.aliases = aliases

    async def ResolveCaller(self, request, context):  # noqa: N802
        if not current_principal().internal:
            raise PermissionDenied("callers' keys are resolved only for the internal token "
                                   "(DISTILL_INTERNAL_TOKEN, which the router holds)")
        return directory_pb2.ResolveCallerResponse(
            project=self.auth.caller_project(request.key_sha256))

    async def GetProjectAlias(self, request, context):  # noqa: N802
        alias = self.aliases.get(request.name, _readable(request.project))
        return directory_pb2.GetProjectAliasResponse(alias=alias)

    async def ListProjectAliases(self, request, context):  # noqa: N802
        aliases, token = self.aliases.list(request.page_size, request.page_token,
                                           _readable(request.project))
        return directory_pb2.ListProjectAliasesResponse(aliases=aliases, next_page_token=token)


def _readable(project: str) -> str:
    """The project whose aliases the caller may read: any with the internal token, else its own."""
    principal = current_principal()
    if principal.internal:
        return project_name(project)
    if project != principal.project:
        raise PermissionDenied("project: another project's aliases are read only with the "
                               "internal token")
    return project


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    """Projects' API keys; the admin key only."""

    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys

    async def CreateApiKey(self, request, context):  # noqa: N802
        _admin_only()
        record, key = self.keys.create(request.project, request.description)
        return admin_pb2.CreateApiKeyResponse(api_key=record, key=key)

    async def ListApiKeys(self, request, context):  # noqa: N802
        _admin_only()
        return admin_pb2.ListApiKeysResponse(api_keys=self.keys.list(request.project))

    async def RevokeApiKey(self, request, context):  # noqa: N802
        _admin_only()
        return admin_pb2.RevokeApiKeyResponse(api_key=self.keys.revoke(request.name))


def _admin_only() -> None:
    if not current_principal().admin:
        raise PermissionDenied("API keys are managed with the admin key (the gateway's "
                               "admin_token setting, DISTILL_ADMIN_TOKEN)")


def build(settings: GatewaySettings) -> Sequence[Service]:
    writer = WriterLock(settings.db_path)  # before the store: a second gateway touches nothing
    events = JobEvents(settings.db_path)
    keys = ApiKeys(settings.db_path)
    store = JobStore(settings.db_path, on_save=events.record)
    recorder = LogRecorder(events)
    logging.getLogger("distill.gateway").addHandler(recorder)
    artifacts = settings.open_store()
    hub = JobHub()
    aliases = Aliases(store)
    alias_feed = AliasFeed(store, settings.alias_watch_backlog)
    # The stage services accept only the internal credential, never a user's token.
    internal = settings.internal_token.get_secret_value() if settings.internal_token else None
    trainers = TrainerPool(settings.trainer_targets,
                           status_timeout=settings.trainer_status_timeout_seconds,
                           interval=settings.trainer_schedule_interval_seconds,
                           max_moves=settings.trainer_max_moves, metadata=auth_metadata(internal),
                           security=settings.stage_security)
    clients = StageClients.connect(settings.generator_address, settings.judge_address,
                                   trainers, settings.exporter_address,
                                   settings.stage_idle_timeout_seconds, internal,
                                   connect_seconds=settings.stage_connect_timeout_seconds,
                                   attempts=settings.stage_attempts,
                                   security=settings.stage_security)
    metrics = GatewayMetrics(store.count_by_state, trainers.snapshot)

    lifecycle = Lifecycle(store, hub)
    runner = JobRunner(lifecycle, clients, artifacts, aliases, settings.trainer_wait_seconds,
                       serving_usd_per_hour=settings.serving_usd_per_hour,
                       slots=JobSlots(lambda owner: settings.max_running_jobs))
    jobs = Jobs(lifecycle, hub, runner, clients, artifacts, settings.cache_dir,
                settings.endpoint_policy())
    servicer = GatewayService(jobs, aliases, settings, events, alias_feed)
    retention = Retention(settings.upload_ttl_days * DAY, settings.teacher_cache_ttl_days * DAY,
                          settings.trace_retention_days)
    background: list[asyncio.Task] = []  # the retention sweep and the rollouts' checks

    async def shutdown() -> None:
        for task in background:
            task.cancel()
        hub.close()
        alias_feed.close()
        await runner.shutdown()  # jobs stay non-terminal: the next gateway resumes them

    def started() -> None:
        trainers.start()  # the replica metrics from the start, not from the first training
        jobs.resume_unfinished()
        loop = asyncio.get_running_loop()
        background.append(loop.create_task(runner.rollouts.run(settings.rollout_check_seconds)))
        background.append(loop.create_task(sweep_periodically(
            artifacts, store, retention, settings.retention_sweep_seconds)))

    async def stopped() -> None:
        await clients.close()  # the stage channels and the trainer pool's scheduler
        logging.getLogger("distill.gateway").removeHandler(recorder)
        store.close()
        events.close()
        keys.close()
        writer.release()

    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    auth = GatewayAuth(keys, token, settings.admin_token.get_secret_value()
                       if settings.admin_token else None, internal)
    return [Service.of(gateway_pb2, gateway_pb2_grpc, servicer, on_start=started,
                       on_shutdown=shutdown, on_stopped=stopped, metrics=metrics.registry,
                       authenticator=auth),
            Service.of(admin_pb2, admin_pb2_grpc, AdminService(keys)),
            Service.of(directory_pb2, directory_pb2_grpc, DirectoryService(auth, aliases))]
