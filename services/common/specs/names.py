"""The names the servers make up and check: job ids, job resource names, alias names."""

from __future__ import annotations

import re
import uuid

from services.common.errors import InvalidArgument

# A job id becomes a key segment (jobs/{id}/...) and a log field: nothing path-like.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
JOB_NAME_PREFIX = "jobs/"
ALIAS_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def job_id(value: str, field: str = "job_id", *, optional: bool = False) -> str:
    """`value` if it is a valid job id; with `optional`, "" becomes a fresh one (an ad-hoc run
    of one stage, outside any gateway job)."""
    if not value:
        if optional:
            return new_job_id()
        raise InvalidArgument(f"{field}: required")
    if not JOB_ID.fullmatch(value):
        raise InvalidArgument(f"{field}: {value[:80]!r} must be 1-128 letters, digits, '.', '_' "
                              "or '-', starting with a letter or digit")
    return value


def job_name(job_id: str) -> str:
    """The resource name the gateway's API uses for a job: `jobs/{id}`."""
    return JOB_NAME_PREFIX + job_id


def job_id_of(name: str, field: str = "name") -> str:
    if not name.startswith(JOB_NAME_PREFIX) or not name[len(JOB_NAME_PREFIX):]:
        raise InvalidArgument(f"{field}: expected 'jobs/{{id}}', got {name[:80]!r}")
    return job_id(name[len(JOB_NAME_PREFIX):], field)


def alias_name(name: str, field: str = "name") -> str:
    if not ALIAS_NAME.fullmatch(name):
        raise InvalidArgument(
            f"{field}: aliases are 1-63 lower-case letters, digits and dashes, got {name!r}")
    return name
