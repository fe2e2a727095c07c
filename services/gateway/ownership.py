"""Which project owns a stored artifact, checked before the gateway reads one for a caller.

An uploaded dataset's key and an alias page's key name their project
(services/common/specs/layout.py); anything under `jobs/{id}...` is the job row's project's.
Another project's artifact answers NOT_FOUND, the same as one that does not exist, so a caller
learns nothing about other projects.
"""

from __future__ import annotations

from distill.v1 import common_pb2, gateway_pb2
from services.common.errors import InvalidArgument, NotFound
from services.common.specs.layout import alias_folder_project, dataset_project, job_id_of_key
from services.common.specs.names import job_name
from services.common.storage import ArtifactStore
from services.gateway.job_store import JobStore


def owned_key(uri: str, project: str, store: ArtifactStore, jobs: JobStore,
              field: str = "uri") -> str:
    """The store key of `uri` when `project` owns it; NOT_FOUND otherwise."""
    key = store.key_from_uri(uri)
    if key.endswith("/"):
        raise InvalidArgument(f"{field}: a file, not a folder, got {uri!r}")
    job_id = job_id_of_key(key)
    owner = dataset_project(key) or alias_folder_project(key)
    if job_id is None and owner is None:
        raise InvalidArgument(f"{field}: only files under datasets/, jobs/ and aliases/ are "
                              f"served, got {uri!r}")
    if job_id is not None:
        try:
            jobs.get_job(job_name(job_id), project)
        except (NotFound, InvalidArgument):
            raise NotFound(f"{field}: no artifact at {uri}") from None
    elif owner != project:
        raise NotFound(f"{field}: no artifact at {uri}")
    return key


def check_spec(spec: gateway_pb2.DistillSpec, project: str, store: ArtifactStore,
               jobs: JobStore) -> None:
    """The artifacts the spec names are the project's own (before preflight reads them): its
    datasets, and a local teacher that is a GGUF in the store (another project's student)."""
    if spec.dataset.uri:
        owned_key(spec.dataset.uri, project, store, jobs, "spec.dataset")
    if spec.eval.held_out.uri:
        owned_key(spec.eval.held_out.uri, project, store, jobs, "spec.eval.held_out")
    teachers = [(spec.teacher, "spec.teacher")] + [
        (m.teacher, f"spec.committee[{i}].teacher") for i, m in enumerate(spec.committee)]
    for teacher, field in teachers:
        if teacher.provider == common_pb2.PROVIDER_LOCAL and \
                teacher.model.startswith(store.base_uri):
            owned_key(teacher.model, project, store, jobs, f"{field}.model")
