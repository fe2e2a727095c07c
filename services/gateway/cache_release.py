"""Teacher-cache entries go with the last job that used them.

Each generator run writes the cache keys it read or wrote to a manifest in its folder
(`services/common/teacher_cache_keys.py`). DeleteJob first joins the manifests of the job's
runs (its own, its evaluation's, its expansion rounds') into a release,
`cache/released/{project}/{job_id}.txt`, then deletes the job; `collect` then deletes every
released entry that no manifest of a surviving job of the project names. Only the project's own
cache folder is touched: the same key in another project's folder is another project's entry.

Jobs that run meanwhile: nothing is collected while a job of the project has not ended. A run's
manifest is complete only when the run ends, so while a job runs nobody knows which entries it
is about to read; releases wait, and the gateway's retention sweep collects them once the
project has no unfinished job (a release older than the cache's TTL is dropped with the expired
entries it names). A job submitted while a collection deletes may find an entry it would have
read gone: it pays for that call again and gets a right answer.

A job deleted before manifests existed, or whose run died before writing one, releases
nothing: those entries go by their TTL.
"""

from __future__ import annotations

import tempfile
import threading

from distill.v1 import gateway_pb2
from services.common.specs.layout import (
    RELEASED_CACHE_FOLDER,
    JobKeys,
    is_cache_manifest,
    released_cache_prefix,
    teacher_cache_prefix,
)
from services.common.specs.names import job_id_of
from services.common.storage import ArtifactStore
from services.common.teacher_cache import entry_key
from services.common.teacher_cache_keys import MEDIA_TYPE, read_keys
from services.gateway.job_store import JobStore

# Released keys held in memory at once; more are collected in passes, each over a sixteenth
# (a 256th, ...) of the key space.
CHUNK = 200_000
_LINE_BYTES = 65  # a key and its newline
# DeleteJob's thread and the sweep's never collect at once (nor count an entry twice).
_collecting = threading.Lock()


def manifests(artifacts: ArtifactStore, job_id: str) -> list[str]:
    """The manifests of every run of the job. Blocking."""
    keys = JobKeys(job_id)
    return [*artifacts.list(keys.cache_manifests),
            *(key for runs in (keys.eval_runs_prefix, keys.expansion_runs_prefix)
              for key in artifacts.list(runs) if is_cache_manifest(key))]


def release(artifacts: ArtifactStore, job: gateway_pb2.Job) -> None:
    """Records the cache keys the job's runs used as a release, before the job's folders go
    (none when its runs wrote no manifest). Blocking."""
    job_id = job_id_of(job.name)
    sources = manifests(artifacts, job_id)
    if not sources:
        return
    with tempfile.TemporaryFile() as joined:
        for key in sources:
            for chunk in artifacts.iter_chunks(key):
                joined.write(chunk)
        joined.seek(0)
        artifacts.put(f"{released_cache_prefix(job.project)}{job_id}.txt", joined,
                      media_type=MEDIA_TYPE)


def collect(artifacts: ArtifactStore, jobs: JobStore, project: str) -> int:
    """Deletes the project's released entries that no surviving job's manifest names, unless a
    job of the project has not ended; returns how many entries went. Blocking."""
    with _collecting:
        releases = [*artifacts.list(released_cache_prefix(project))]
        if not releases or jobs.has_unfinished(project):
            return 0
        survivors = [key for job_id in jobs.job_ids(project)
                     for key in manifests(artifacts, job_id)]
        lines = sum(artifacts.stat(key).size_bytes for key in releases) // _LINE_BYTES
        digits = 0
        while lines > CHUNK * 16 ** digits:
            digits += 1
        folder = teacher_cache_prefix(project)
        deleted = 0
        for part in range(16 ** digits):
            unused = {key for name in releases for key in read_keys(artifacts, name)
                      if not digits or int(key[:digits], 16) == part}
            for name in survivors:
                unused.difference_update(read_keys(artifacts, name))
            artifacts.delete_keys([entry_key(folder, key) for key in sorted(unused)])
            deleted += len(unused)
        artifacts.delete_keys(releases)
        return deleted


def collect_all(artifacts: ArtifactStore, jobs: JobStore) -> int:
    """`collect` for every project with releases waiting (the retention sweep). Blocking."""
    projects = {key.removeprefix(RELEASED_CACHE_FOLDER).split("/", 1)[0]
                for key in artifacts.list(RELEASED_CACHE_FOLDER)}
    return sum(collect(artifacts, jobs, project) for project in sorted(projects))
