"""Aliases: a stable name → a versioned target (a trained student or a teacher model).

An alias belongs to a project and points only at that project's jobs: another project's alias
or job is NOT_FOUND here, whatever the call.
"""

from __future__ import annotations

import re

from distill.v1 import gateway_pb2
from services.common.auth import DEFAULT_PROJECT
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.specs.fields import (
    MAX_MODEL_BYTES,
    MAX_NAME_BYTES,
    artifact_text,
    model_text,
    text_field,
)
from services.common.specs.names import alias_name
from services.common.specs.routing import routing as routing_spec
from services.gateway.job_store import JobStore


class Aliases:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def set(self, name: str, target: gateway_pb2.AliasTarget, expected_version: int,
            project: str = DEFAULT_PROJECT,
            routing: gateway_pb2.AliasRouting | None = None) -> gateway_pb2.Alias:
        """Compare-and-swap: expected_version is the version the caller saw (0: must not exist)."""
        alias_name(name)
        if expected_version < 0:
            raise InvalidArgument(f"expected_version: must be >= 0, got {expected_version}")
        return self.store.set_alias(name, self._checked(target, project), expected_version,
                                    project, self._checked_routing(routing, project))

    def get(self, name: str, project: str = DEFAULT_PROJECT) -> gateway_pb2.Alias:
        return self.store.get_alias(alias_name(name), project)

    def list(self, page_size: int, page_token: str,
             project: str = DEFAULT_PROJECT) -> tuple[list[gateway_pb2.Alias], str]:
        return self.store.list_aliases(page_size, page_token, project)

    def serving(self, job: gateway_pb2.Job) -> list[str]:
        """The aliases (of the job's project) whose current target is `job`'s student."""
        names, token = [], ""
        while True:
            aliases, token = self.store.list_aliases(0, token, job.project)
            names += [a.name for a in aliases if a.target.job == job.name]
            if not token:
                return names

    def rollback(self, name: str, to_version: int, expected_version: int,
                 project: str = DEFAULT_PROJECT) -> gateway_pb2.Alias:
        """Restores an earlier version's target and routing as a new version (history is never
        rewritten)."""
        alias = self.get(name, project)
        to_version = to_version or alias.version - 1
        previous = {entry.version: entry for entry in alias.history}
        if to_version not in previous or to_version == alias.version:
            raise FailedPrecondition(
                f"alias {name!r} has no earlier version {to_version} to roll back to "
                f"(versions 1..{alias.version}, current {alias.version})")
        entry = previous[to_version]
        target = entry.target
        if target.WhichOneof("target") == "job":
            try:
                self.store.get_job(target.job, project)
            except NotFound:  # DeleteJob keeps history but not the deleted job's student
                raise FailedPrecondition(
                    f"alias {name!r} version {to_version} points at {target.job}, which was "
                    "deleted: roll back to another version or set the alias to a job") from None
        return self.store.set_alias(name, target, expected_version or None, project,
                                    entry.routing if entry.HasField("routing") else None)

    def _checked_routing(self, routing: gateway_pb2.AliasRouting | None,
                         project: str) -> gateway_pb2.AliasRouting | None:
        """The routing with its job targets resolved to their GGUFs, or None when unset."""
        if routing is None or routing.ByteSize() == 0:
            return None
        rules = routing_spec(routing)
        resolved = gateway_pb2.AliasRouting()
        resolved.CopyFrom(routing)
        for i, (target, _) in enumerate(rules.canary):
            resolved.canary[i].target.CopyFrom(
                self._checked(target, project, f"routing.canary[{i}].target"))
        for i, target in enumerate(rules.shadows):
            resolved.shadows[i].CopyFrom(self._checked(target, project, f"routing.shadows[{i}]"))
        return resolved

    def _checked(self, target: gateway_pb2.AliasTarget, project: str,
                 field: str = "target") -> gateway_pb2.AliasTarget:
        kind = target.WhichOneof("target")
        text_field(target.description, f"{field}.description", MAX_NAME_BYTES)
        text_field(target.job, f"{field}.job", MAX_MODEL_BYTES)
        artifact_text(target.gguf, f"{field}.gguf")
        if kind is None:
            raise InvalidArgument(f"{field}: set job, teacher or upstream")
        if target.max_tokens_limit < 0:
            raise InvalidArgument(
                f"{field}.max_tokens_limit: must be >= 0, got {target.max_tokens_limit}")
        if kind == "upstream":
            if not re.match(r"^https?://[^\s/]+", target.upstream.base_url):
                raise InvalidArgument(f"{field}.upstream.base_url: must be an http(s) URL, got "
                                      f"{target.upstream.base_url!r}")
            if not target.upstream.model:
                raise InvalidArgument(f"{field}.upstream.model: required")
            return target
        if kind == "teacher":
            if not target.teacher.model:
                raise InvalidArgument(f"{field}.teacher.model: required")
            model_text(target.teacher, f"{field}.teacher")
            return target
        job = self.store.get_job(target.job, project)
        if job.state != gateway_pb2.JOB_STATE_SUCCEEDED:
            state = gateway_pb2.JobState.Name(job.state)
            raise FailedPrecondition(f"{field}.job: {target.job} is {state}, not SUCCEEDED")
        resolved = gateway_pb2.AliasTarget()
        resolved.CopyFrom(target)
        if resolved.HasField("gguf"):
            _check_export(resolved.gguf.uri, job)
        elif job.outputs.HasField("student_gguf"):
            resolved.gguf.CopyFrom(job.outputs.student_gguf)
        return resolved


def _check_export(uri: str, job: gateway_pb2.Job) -> None:
    """A GGUF the caller names must be one of the job's exports (another quantization beside
    its student GGUF): never another job's artifact, whatever project that job is in."""
    exported = job.outputs.student_gguf.uri
    folder = exported[:exported.rfind("/") + 1]
    if not exported or not uri.startswith(folder) or ".." in uri.split("/"):
        raise InvalidArgument(f"target.gguf: must be one of {job.name}'s exported GGUFs "
                              f"(beside {exported or 'its student GGUF, which it has not'}), "
                              f"got {uri!r}")
