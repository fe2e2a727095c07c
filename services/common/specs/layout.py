"""Where a job's artifacts live in the store: every `jobs/{id}/...` key is built here, and the
project-owned folders outside jobs (uploaded datasets, the teacher cache).

A job's folder is not per project: the gateway checks the job row's project before it serves
anything under `jobs/{id}...`. Datasets and teacher-cache entries have no row, so their keys
carry the project: `datasets/{project}/`, `cache/teacher/{project}/`; the default project keeps
the folders' top level, the layout of installs from before projects. Deleted jobs' lists of
cache keys waiting to be collected (`cache/released/{project}/`) always name their project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.common.auth import DEFAULT_PROJECT
from services.common.errors import PermissionDenied

JOBS_FOLDER = "jobs/"
DATASETS_FOLDER = "datasets/"
TEACHER_CACHE_FOLDER = "cache/teacher/"
# A generator run's manifest of the teacher-cache keys it used, in the run's folder.
CACHE_MANIFESTS = "teacher-cache-keys/"
# Deleted jobs' manifests, until their entries no surviving job uses are deleted.
RELEASED_CACHE_FOLDER = "cache/released/"
# One JSON line per optimizer step, in each checkpoint and in the adapter folder (where the job
# report reads it). Plain text: the exporter's pickle checks pass it.
TRAINING_LOG = "training_log.jsonl"


class _Store(Protocol):
    def key_from_uri(self, uri: str) -> str: ...


@dataclass(frozen=True)
class JobKeys:
    job_id: str

    @property
    def prefix(self) -> str:
        """Everything a job writes is under this folder."""
        return f"{JOBS_FOLDER}{self.job_id}/"

    @property
    def candidates(self) -> str:
        return f"{self.prefix}candidates/candidates.jsonl"

    @property
    def curated(self) -> str:
        return f"{self.prefix}curated.jsonl"

    def split(self, part: str) -> str:
        """The dataset's `train` or `held_out` part."""
        return f"{self.prefix}{part}.jsonl"

    @property
    def expanded(self) -> str:
        """The training prompts after prompt expansion."""
        return f"{self.prefix}expanded.jsonl"

    def expansion_run_id(self, part: str) -> str:
        """The job id each expansion round's generator and judge runs write under
        (`{id}-expand-{part}`), outside the job's folder as the evaluation's runs are."""
        return f"{self.job_id}-expand-{part}"

    @property
    def expansion_runs_prefix(self) -> str:
        return f"{JOBS_FOLDER}{self.job_id}-expand-"

    @property
    def evaluation(self) -> str:
        return f"{self.prefix}evaluation.jsonl"

    def eval_run_id(self, part: str) -> str:
        """The job id the evaluation's own generator and judge runs write under
        (`{id}-eval-{model}`, `{id}-eval`): outside the job's folder, so that a stage told the
        run's id writes nowhere in it."""
        return f"{self.job_id}-eval-{part}" if part else f"{self.job_id}-eval"

    def owns(self, key: str) -> bool:
        """Whether `key` is this job's to read: in its folder, or for an evaluation run
        (`{id}-eval...`) in its job's folder (the held-out split, the GGUFs it evaluates)."""
        if key.startswith(self.prefix):
            return True
        parent, found, _ = self.job_id.rpartition("-eval")
        return bool(found and parent) and key.startswith(JobKeys(parent).prefix)

    def key_of(self, store: _Store, uri: str, field: str) -> str:
        """The store key of an artifact a stage is sent for this job; PERMISSION_DENIED for one
        outside the job's folder, so a call for one job reads, writes and deletes nothing of
        another's."""
        key = store.key_from_uri(uri)
        if not self.owns(key):
            raise PermissionDenied(
                f"{field}: {uri!r} is outside {self.prefix}, the folder of job_id "
                f"{self.job_id!r} this call is for")
        return key

    @property
    def cache_manifests(self) -> str:
        return f"{self.prefix}{CACHE_MANIFESTS}"

    def cache_manifest(self, run: str) -> str:
        """The teacher-cache keys one generator run for this job id used
        (`services/common/teacher_cache_keys.py`); each run writes its own."""
        return f"{self.cache_manifests}{run}.txt"

    @property
    def run_prefixes(self) -> tuple[str, str, str]:
        """The job's folder and the folders of its evaluation's and expansion's runs."""
        return (self.prefix, self.eval_runs_prefix, self.expansion_runs_prefix)

    @property
    def eval_runs_prefix(self) -> str:
        """Every evaluation run's folder starts with this (ids are fixed-length hex, so no other
        job's folder does)."""
        return f"{JOBS_FOLDER}{self.eval_run_id('')}"

    @property
    def checkpoints(self) -> str:
        return f"{self.prefix}checkpoints/"

    def checkpoint(self, step: int) -> str:
        return f"{self.checkpoints}step-{step}/"

    @property
    def adapter(self) -> str:
        return f"{self.prefix}adapter/"

    @property
    def report(self) -> str:
        return f"{self.prefix}report/"

    # The exporter's outputs.
    @property
    def merged(self) -> str:
        return f"{self.prefix}merged/"

    @property
    def gguf(self) -> str:
        return f"{self.prefix}gguf/"

    @property
    def modelfile(self) -> str:
        return f"{self.prefix}Modelfile"

    @property
    def export_manifest(self) -> str:
        return f"{self.prefix}manifest.json"


def _project_folder(folder: str, project: str) -> str:
    return folder if project == DEFAULT_PROJECT else f"{folder}{project}/"


def dataset_key(project: str, sha256: str) -> str:
    return f"{_project_folder(DATASETS_FOLDER, project)}{sha256}.jsonl"


def dataset_project(key: str) -> str | None:
    """The project owning a `datasets/...` key, None for a key outside that layout."""
    parts = key.removeprefix(DATASETS_FOLDER).split("/")
    if not key.startswith(DATASETS_FOLDER) or len(parts) > 2 or not all(parts):
        return None
    return parts[0] if len(parts) == 2 else DEFAULT_PROJECT


ALIASES_FOLDER = "aliases/"


def alias_report_prefix(project: str, alias: str) -> str:
    """The alias page's folder (services/gateway/alias_report.py); always names its project."""
    return f"{ALIASES_FOLDER}{project}/{alias}/report/"


def alias_folder_project(key: str) -> str | None:
    """The project owning an `aliases/{project}/...` key, None for a key outside that layout."""
    parts = key.removeprefix(ALIASES_FOLDER).split("/")
    if not key.startswith(ALIASES_FOLDER) or len(parts) < 3 or not all(parts[:2]):
        return None
    return parts[0]


def teacher_cache_prefix(project: str) -> str:
    return _project_folder(TEACHER_CACHE_FOLDER, project)


def is_cache_manifest(key: str) -> bool:
    """Whether a `jobs/...` key is a run's manifest of teacher-cache keys (`cache_manifest`)."""
    return f"/{CACHE_MANIFESTS}" in key and key.endswith(".txt")


def released_cache_prefix(project: str) -> str:
    """A project's released manifests (`cache/released/{project}/{job_id}.txt`); always
    names its project."""
    return f"{RELEASED_CACHE_FOLDER}{project}/"


def job_id_of_key(key: str) -> str | None:
    """The job whose folder, or evaluation run's folder, holds a `jobs/...` key."""
    folder = key.removeprefix(JOBS_FOLDER).split("/", 1)[0]
    if not key.startswith(JOBS_FOLDER) or not folder:
        return None
    return folder.split("-eval", 1)[0]  # JobKeys.eval_run_id: `{id}-eval-{model}`
