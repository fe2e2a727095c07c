"""What the gateway deletes besides jobs: an uploaded dataset on request (DeleteDataset), and
on a timer the uploads and teacher-cache entries older than their TTL, and the router's traces
older than theirs (settings `upload_ttl_days`, `teacher_cache_ttl_days`,
`trace_retention_days`; 0 keeps them until deleted), and the cache entries of deleted jobs
that waited for their project's running jobs to end (`cache_release.py`).

A dataset a job that has not ended uses (as its dataset or held-out set) is never deleted:
DeleteDataset refuses, the sweep skips it. Jobs that ended keep what they made from it under
their own `jobs/{id}/` folder, and the teacher-cache entries their runs used: those go when the
last job that used them is deleted (DeleteJob), or by their TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.specs.layout import (
    DATASETS_FOLDER,
    RELEASED_CACHE_FOLDER,
    TEACHER_CACHE_FOLDER,
    dataset_project,
)
from services.common.storage import ArtifactStore
from services.common.traces.retention import sweep as sweep_traces
from services.gateway import cache_release
from services.gateway.job_store import JobStore
from services.gateway.ownership import owned_key

log = logging.getLogger("distill.gateway.retention")
DAY = 86_400.0


@dataclass(frozen=True)
class Retention:
    upload_ttl_seconds: float  # 0: uploads stay until DeleteDataset
    teacher_cache_ttl_seconds: float  # 0: entries stay
    trace_days: float = 0.0  # whole UTC days of the router's traces kept besides today; 0: all


def datasets_in_use(jobs: JobStore) -> dict[str, str]:
    """Dataset URI -> the first job that has not ended and reads it."""
    users: dict[str, str] = {}
    for job in jobs.unfinished_jobs():
        for ref in (job.spec.dataset, job.spec.eval.held_out):
            if ref.uri:
                users.setdefault(ref.uri, job.name)
    return users


def delete_dataset(uri: str, project: str, jobs: JobStore, artifacts: ArtifactStore) -> int:
    """Deletes one of the project's uploads; returns how many stored objects went (1); another
    project's is NOT_FOUND. Blocking."""
    key = owned_key(uri, project, artifacts, jobs)
    if dataset_project(key) is None:
        raise InvalidArgument(f"uri: only uploaded datasets ({DATASETS_FOLDER}...) can be "
                              f"deleted here, got {uri[:200]!r} (jobs: DeleteJob)")
    if user := datasets_in_use(jobs).get(uri):
        raise FailedPrecondition(f"uri: {user} uses this dataset and has not ended: cancel it "
                                 "or let it end, then delete the dataset")
    if not artifacts.exists(key):
        raise NotFound(f"uri: no dataset at {uri[:200]!r}")
    artifacts.delete(key)
    return 1


def sweep(artifacts: ArtifactStore, jobs: JobStore, retention: Retention, now: float) -> int:
    """Deletes the uploads older than their TTL that no unfinished job uses, the teacher-cache
    entries older than theirs (and the releases of deleted jobs' keys, which then name only
    expired entries), and the released entries no job uses once their project has no
    unfinished job; returns how many objects went. Blocking."""
    in_use = datasets_in_use(jobs)
    deleted = 0
    # (every project's: their folders are under these)
    for prefix, ttl in ((DATASETS_FOLDER, retention.upload_ttl_seconds),
                        (TEACHER_CACHE_FOLDER, retention.teacher_cache_ttl_seconds),
                        (RELEASED_CACHE_FOLDER, retention.teacher_cache_ttl_seconds)):
        if ttl <= 0:
            continue
        for key in list(artifacts.list(prefix)):
            if artifacts.uri(key) in in_use:
                continue
            try:
                expired = now - artifacts.modified(key) > ttl
            except NotFound:  # deleted meanwhile
                continue
            if expired:
                artifacts.delete(key)
                deleted += 1
    deleted += cache_release.collect_all(artifacts, jobs)
    return deleted + sweep_traces(artifacts, now, retention.trace_days)


async def sweep_periodically(artifacts: ArtifactStore, jobs: JobStore, retention: Retention,
                             interval_seconds: float) -> None:
    """The gateway's background sweep, once at start and then every `interval_seconds`."""
    while True:
        try:
            deleted = await asyncio.to_thread(sweep, artifacts, jobs, retention, time.time())
            if deleted:
                log.info("retention sweep", extra={"deleted": deleted})
        except Exception:  # a store that is down now may be up at the next sweep
            log.exception("retention sweep failed")
        await asyncio.sleep(interval_seconds)
