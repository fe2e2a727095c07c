"""DeleteJob: a finished job, its event log and the artifacts only it uses.

What only the job uses lives under its folder `jobs/{id}/` (held-out split, expanded prompts,
candidates, curated set, checkpoints, adapter, exports, evaluation, report) and the folders of
its evaluation's generation runs (`jobs/{id}-eval-{model}/`) and of prompt expansion's rounds
(`jobs/{id}-expand-{round}/`), and in the teacher cache, the entries its runs used that no
other job of its project uses (`cache_release.py`). Datasets and the base models the exporter
shares between jobs (`models/base/`) stay.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from distill.v1 import gateway_pb2
from services.common.errors import FailedPrecondition
from services.common.specs.layout import JobKeys
from services.common.specs.names import job_id_of
from services.common.storage import ArtifactStore
from services.gateway import cache_release
from services.gateway.aliases import Aliases
from services.gateway.events import JobEvents
from services.gateway.job_store import TERMINAL, JobStore

log = logging.getLogger("distill.gateway.deletion")


@dataclass(frozen=True)
class Deleted:
    artifacts: int  # stored objects of the job's own folders
    cache_entries: int  # teacher-cache entries no surviving job uses (0 while one runs)


async def delete_job(name: str, project: str, store: JobStore, events: JobEvents,
                     aliases: Aliases, artifacts: ArtifactStore) -> Deleted:
    """Deletes the project's job; returns how many stored objects went with it. Its cache keys
    are released first, then the artifacts go and the job row last, so a deletion cut short can
    simply be asked for again; a collection of its entries cut short, the sweep finishes."""
    job = store.get_job(name, project)
    state = gateway_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
    if job.state not in TERMINAL:
        raise FailedPrecondition(f"{name} is {state}: cancel it first (`distill cancel {name}`) "
                                 "or let it end, then delete it")
    if serving := aliases.serving(job):
        raise FailedPrecondition(
            f"{name}: alias {', '.join(repr(a) for a in serving)} serves its student; point it "
            "at another job or roll it back first")
    await asyncio.to_thread(cache_release.release, artifacts, job)
    deleted = 0
    for prefix in JobKeys(job_id_of(name)).run_prefixes:
        deleted += await asyncio.to_thread(artifacts.delete_prefix, prefix)
    events.delete(name)
    store.delete_job(name)
    entries = await asyncio.to_thread(cache_release.collect, artifacts, store, project)
    log.info("job deleted", extra={"job": name, "project": project, "artifacts": deleted,
                                   "cache_entries": entries})
    return Deleted(deleted, entries)
