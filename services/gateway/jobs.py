"""Jobs as the gateway's users see them: create (idempotent), get, list, watch, cancel, resume."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from distill.v1 import common_pb2, gateway_pb2
from services.common import errors
from services.common.specs import names
from services.common.storage import ArtifactStore
from services.gateway import preflight
from services.gateway.job_store import TERMINAL, JobStore, now
from services.gateway.runner import JobRunner
from services.gateway.watch import JobHub

log = logging.getLogger("distill.gateway.jobs")


class Jobs:
    def __init__(self, store: JobStore, hub: JobHub, runner: JobRunner,
                 artifacts: ArtifactStore, cache_dir: Path) -> None:
        self.store = store
        self.hub = hub
        self.runner = runner
        self.artifacts = artifacts
        self.cache_dir = cache_dir

    async def estimate(self, request: gateway_pb2.EstimateRequest) -> gateway_pb2.EstimateResponse:
        return await asyncio.to_thread(preflight.estimate, request, self.artifacts,
                                       self.cache_dir)

    async def distill(self, request: gateway_pb2.DistillRequest) -> gateway_pb2.Job:
        if request.request_id:
            try:
                uuid.UUID(request.request_id)
            except ValueError:
                raise errors.InvalidArgument(
                    f"request_id: must be a UUID, got {request.request_id!r}") from None
            if existing := self.store.find_by_request_id(request.request_id):
                return existing  # a retried Distill: the same job, never a second run
        trainer = await self.runner.clients.trainer_status()
        await asyncio.to_thread(preflight.check, request.spec, self.artifacts, self.cache_dir,
                                False, trainer)
        job = gateway_pb2.Job(name=names.job_name(names.new_job_id()),
                              request_id=request.request_id, spec=request.spec,
                              state=gateway_pb2.JOB_STATE_PENDING,
                              progress=common_pb2.Progress(message="queued"))
        job.create_time.CopyFrom(now())
        job.update_time.CopyFrom(job.create_time)
        job, created = self.store.create_job(job)
        if created:
            self.hub.publish(job)
            self.runner.start(job)
        return job

    def get(self, name: str) -> gateway_pb2.Job:
        return self.store.get_job(name)

    def list(self, request: gateway_pb2.ListJobsRequest) -> gateway_pb2.ListJobsResponse:
        jobs, token = self.store.list_jobs(request.page_size, request.page_token, request.states)
        return gateway_pb2.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def watch(self, name: str) -> AsyncIterator[gateway_pb2.Job]:
        async for job in self.hub.watch(self.store.get_job(name)):
            yield job

    async def cancel(self, name: str) -> gateway_pb2.Job:
        job = self.store.get_job(name)
        if job.state in TERMINAL:
            raise errors.FailedPrecondition(
                f"{name} is already {gateway_pb2.JobState.Name(job.state)}")
        self.runner.cancelling.add(name)  # before the save: no runner event may undo it
        if job.state != gateway_pb2.JOB_STATE_CANCELLING:
            job.state = gateway_pb2.JOB_STATE_CANCELLING
            self.store.save_job(job)
            self.hub.publish(job)
        await self.runner.cancel(name)  # cancels the stage streams: spending stops here
        job = self.store.get_job(name)
        if job.state == gateway_pb2.JOB_STATE_CANCELLING:  # no runner was active
            job.state = gateway_pb2.JOB_STATE_CANCELLED
            self.store.save_job(job)
            self.hub.publish(job)
        self.runner.cancelling.discard(name)
        return job

    def resume_unfinished(self) -> int:
        """After a restart: every non-terminal job continues from its last finished stage."""
        resumed = 0
        for job in self.store.unfinished_jobs():
            if job.state == gateway_pb2.JOB_STATE_CANCELLING:
                job.state = gateway_pb2.JOB_STATE_CANCELLED
                self.store.save_job(job)
                continue
            log.info("resuming", extra={"job": job.name,
                                        "state": gateway_pb2.JobState.Name(job.state)})
            self.hub.publish(job)
            self.runner.start(job)
            resumed += 1
        return resumed
