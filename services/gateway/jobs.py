"""Jobs as the gateway's users see them: create (idempotent), get, list, watch, cancel, resume."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from distill.v1 import gateway_pb2
from services.common import errors
from services.common.providers import EndpointPolicy
from services.common.specs import names
from services.common.storage import ArtifactStore
from services.gateway import preflight
from services.gateway.lifecycle import Lifecycle
from services.gateway.ownership import check_spec
from services.gateway.runner import JobRunner
from services.gateway.stages import StageClients
from services.gateway.watch import JobHub

log = logging.getLogger("distill.gateway.jobs")


class Jobs:
    def __init__(self, lifecycle: Lifecycle, hub: JobHub, runner: JobRunner,
                 clients: StageClients, artifacts: ArtifactStore, cache_dir: Path,
                 policy: EndpointPolicy) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store  # reads only: every change goes through the lifecycle
        self.hub = hub
        self.runner = runner
        self.clients = clients
        self.artifacts = artifacts
        self.cache_dir = cache_dir
        self.policy = policy

    async def estimate(self, request: gateway_pb2.EstimateRequest,
                       project: str) -> gateway_pb2.EstimateResponse:
        check_spec(request.spec, project, self.artifacts, self.store)
        return await asyncio.to_thread(preflight.estimate, request, self.artifacts,
                                       self.cache_dir, self.policy)

    async def distill(self, request: gateway_pb2.DistillRequest, project: str) -> gateway_pb2.Job:
        if request.request_id:
            try:
                uuid.UUID(request.request_id)
            except ValueError:
                raise errors.InvalidArgument(
                    f"request_id: must be a UUID, got {request.request_id!r}") from None
            if existing := self.store.find_by_request_id(request.request_id, project):
                return existing  # a retried Distill: the same job, never a second run
        check_spec(request.spec, project, self.artifacts, self.store)
        trainer = await self.clients.trainer_status()
        checked = await asyncio.to_thread(preflight.check, request.spec, self.artifacts,
                                          self.cache_dir, False, trainer, policy=self.policy)
        job, created = self.lifecycle.create(gateway_pb2.Job(
            name=names.job_name(names.new_job_id()), request_id=request.request_id,
            spec=request.spec, project=project))
        if created:
            self.runner.start(job, checked.prompts)  # the dataset parsed once, handed on
        return job

    def get(self, name: str, project: str) -> gateway_pb2.Job:
        return self.store.get_job(name, project)

    def list(self, request: gateway_pb2.ListJobsRequest,
             project: str) -> gateway_pb2.ListJobsResponse:
        jobs, token = self.store.list_jobs(request.page_size, request.page_token, request.states,
                                           project=project)
        return gateway_pb2.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def watch(self, name: str, project: str) -> AsyncIterator[gateway_pb2.Job]:
        async for job in self.hub.watch(self.store.get_job(name, project)):
            yield job

    async def cancel(self, name: str, project: str) -> gateway_pb2.Job:
        self.store.get_job(name, project)  # another project's job: NOT_FOUND, nothing cancelled
        self.lifecycle.request_cancel(name)
        await self.runner.cancel(name)  # cancels the stage streams: spending stops here
        return self.lifecycle.finish_cancel(name)

    def resume_unfinished(self) -> int:
        """After a restart: every non-terminal job continues from its last finished stage."""
        jobs = self.lifecycle.unfinished()
        for job in jobs:
            log.info("resuming", extra={"job": job.name,
                                        "state": gateway_pb2.JobState.Name(job.state)})
            self.runner.start(job)
        return len(jobs)
