"""DeleteJob: a finished job, its event log and the artifacts only it uses.

What only the job uses lives under its folder `jobs/{id}/` (held-out split, expanded prompts,
candidates, curated set, checkpoints, adapter, exports, evaluation, report) and the folders of
its evaluation's generation runs (`jobs/{id}-eval-{model}/`) and of prompt expansion's rounds
(`jobs/{id}-expand-{round}/`). Datasets, the teacher cache and the base models the exporter
shares between jobs (`models/base/`) stay.
"""

from __future__ import annotations

import asyncio

from distill.v1 import gateway_pb2
from services.common.errors import FailedPrecondition
from services.common.specs.layout import JobKeys
from services.common.specs.names import job_id_of
from services.common.storage import ArtifactStore
from services.gateway.aliases import Aliases
from services.gateway.events import JobEvents
from services.gateway.job_store import TERMINAL, JobStore


async def delete_job(name: str, project: str, store: JobStore, events: JobEvents,
                     aliases: Aliases, artifacts: ArtifactStore) -> int:
    """Deletes the project's job; returns how many stored objects went with it. The artifacts
    go first and the job row last, so a deletion cut short can simply be asked for again."""
    job = store.get_job(name, project)
    state = gateway_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
    if job.state not in TERMINAL:
        raise FailedPrecondition(f"{name} is {state}: cancel it first (`distill cancel {name}`) "
                                 "or let it end, then delete it")
    if serving := aliases.serving(job):
        raise FailedPrecondition(
            f"{name}: alias {', '.join(repr(a) for a in serving)} serves its student; point it "
            "at another job or roll it back first")
    keys = JobKeys(job_id_of(name))
    deleted = await asyncio.to_thread(artifacts.delete_prefix, keys.prefix)
    for runs in (keys.eval_runs_prefix, keys.expansion_runs_prefix):
        deleted += await asyncio.to_thread(artifacts.delete_prefix, runs)
    events.delete(name)
    store.delete_job(name)
    return deleted
