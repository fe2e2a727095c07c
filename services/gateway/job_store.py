"""The gateway's durable state in SQLite: jobs (one row each) and versioned aliases.

A job row holds the whole `Job` message, so a restarted gateway knows every job's state, stage
outputs and accrued cost. The spec (which may hold long prompts and schemas) is its own column,
written once at creation: the many progress saves rewrite only the small rest of the job.
Alias changes are compare-and-swap on the version, in one transaction. Jobs and aliases belong
to a project: a read given a project sees only that project's rows, and another project's job
or alias is NOT_FOUND, as if it did not exist. The rowid of
`alias_versions` doubles as the alias change log's sequence (rows are only ever appended, so it
increases with every change, across projects, and survives restarts).
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from distill.v1 import gateway_pb2
from services.common.auth import DEFAULT_PROJECT
from services.common.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from services.common.specs.names import job_id_of

TERMINAL = frozenset({gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JOB_STATE_FAILED,
                      gateway_pb2.JOB_STATE_CANCELLED})
MAX_PAGE = 500
DEFAULT_PAGE = 50
# A ListJobs page stops before its jobs pass this many bytes, well under gRPC's default 4 MiB
# receive limit, so large rows (long system prompts) cannot make the listing fail for everyone.
MAX_PAGE_BYTES = 2 * 1024 * 1024

_ALIAS_COLUMNS = """(
    project TEXT NOT NULL DEFAULT 'default',
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    target BLOB NOT NULL,
    create_time REAL NOT NULL,
    routing BLOB,
    PRIMARY KEY (project, name, version)
)"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,
    state INTEGER NOT NULL,
    create_time REAL NOT NULL,
    job BLOB NOT NULL,
    project TEXT NOT NULL DEFAULT 'default',
    spec BLOB
);
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (create_time DESC, id DESC);
CREATE TABLE IF NOT EXISTS alias_versions {_ALIAS_COLUMNS};
CREATE TABLE IF NOT EXISTS rollouts (
    project TEXT NOT NULL,
    alias TEXT NOT NULL,
    rollout BLOB NOT NULL,
    PRIMARY KEY (project, alias)
);
"""

# Databases from before projects: every job and alias becomes the default project's. An alias
# name is unique per project, so its table is rebuilt with the project in the primary key.
_MIGRATIONS = {
    "jobs": "ALTER TABLE jobs ADD COLUMN project TEXT NOT NULL DEFAULT 'default';",
    "alias_versions": f"""
CREATE TABLE alias_versions_new {_ALIAS_COLUMNS};
INSERT INTO alias_versions_new (name, version, target, create_time)
    SELECT name, version, target, create_time FROM alias_versions;
DROP TABLE alias_versions;
ALTER TABLE alias_versions_new RENAME TO alias_versions;
""",
}


def _migrate(db: sqlite3.Connection) -> None:
    for table, script in _MIGRATIONS.items():
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        if columns and "project" not in columns:
            db.executescript(f"BEGIN IMMEDIATE; {script} COMMIT;")


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _page_token(create_time: float, key: str) -> str:
    return base64.urlsafe_b64encode(f"{create_time!r}|{key}".encode()).decode()


def _parse_token(token: str) -> tuple[float, str]:
    try:
        created, key = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return float(created), key
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token: not a token this server issued") from None


def _page_size(size: int) -> int:
    if size < 0:
        raise InvalidArgument(f"page_size: must be >= 0, got {size}")
    return min(size or DEFAULT_PAGE, MAX_PAGE)


AliasChange = tuple[int, gateway_pb2.AliasState]  # (sequence, the alias after the change)


class JobStore:
    """`on_save` sees every job as it is created or saved (the job event log); `on_alias`, when
    set, every alias change once committed (the alias feed sets it)."""

    def __init__(self, path: Path | str,
                 on_save: Callable[[gateway_pb2.Job], None] | None = None) -> None:
        self._on_save = on_save
        self.on_alias: Callable[[int, gateway_pb2.AliasState], None] | None = None
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        _migrate(self._db)
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(alias_versions)")}
        if "routing" not in columns:  # databases from before alias routing
            self._db.execute("ALTER TABLE alias_versions ADD COLUMN routing BLOB")
        self._split_specs()
        self._lock = threading.Lock()

    def _split_specs(self) -> None:
        """A job store from before the spec column: each row's spec moves to its own column."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "spec" in columns:
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("ALTER TABLE jobs ADD COLUMN spec BLOB")
        for job_id, blob in self._db.execute("SELECT id, job FROM jobs").fetchall():
            job = gateway_pb2.Job.FromString(blob)
            self._db.execute("UPDATE jobs SET job = ?, spec = ? WHERE id = ?",
                             (_without_spec(job), job.spec.SerializeToString(), job_id))
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    # -- jobs ---------------------------------------------------------------------------------

    def create_job(self, job: gateway_pb2.Job) -> tuple[gateway_pb2.Job, bool]:
        """Stores a new job; with a request_id already seen, returns that job instead (AIP-155).

        Returns (job, created). The job belongs to `job.project` (empty: the default project).
        """
        job_id = job_id_of(job.name)
        job.project = job.project or DEFAULT_PROJECT
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO jobs (id, request_id, state, create_time, job, project, spec) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (job_id, job.request_id or None, job.state,
                     job.create_time.ToNanoseconds() / 1e9, _without_spec(job), job.project,
                     job.spec.SerializeToString()),
                )
            except sqlite3.IntegrityError:
                if job.request_id and (existing := self._by_request_id(job.request_id,
                                                                       job.project)):
                    return existing, False  # a concurrent retry won the insert
                raise AlreadyExists(f"job {job.name} already exists") from None
        if self._on_save is not None:
            self._on_save(job)
        return job, True

    def _by_request_id(self, request_id: str, project: str) -> gateway_pb2.Job | None:
        row = self._db.execute("SELECT job, project, spec FROM jobs WHERE request_id = ?",
                               (request_id,)).fetchone()
        if row is None:
            return None
        if row[1] != project:  # another project's request id: never its job
            raise AlreadyExists("request_id: already used; send a fresh UUID")
        return _job(*row)

    def find_by_request_id(self, request_id: str,
                           project: str = DEFAULT_PROJECT) -> gateway_pb2.Job | None:
        with self._lock:
            return self._by_request_id(request_id, project)

    def get_job(self, name: str, project: str | None = None) -> gateway_pb2.Job:
        """The job; with `project`, only if it is that project's (the gateway's own work,
        running and resuming jobs, passes none)."""
        job_id = job_id_of(name)
        with self._lock:
            row = self._db.execute("SELECT job, project, spec FROM jobs WHERE id = ?",
                                   (job_id,)).fetchone()
        if row is None or (project is not None and row[1] != project):
            raise NotFound(f"job {name!r} not found")
        return _job(*row)

    def save_job(self, job: gateway_pb2.Job) -> None:
        """Saves everything but the spec, which never changes after creation."""
        job.update_time.CopyFrom(now())
        with self._lock:
            updated = self._db.execute(
                "UPDATE jobs SET state = ?, job = ? WHERE id = ?",
                (job.state, _without_spec(job), job_id_of(job.name)),
            ).rowcount
        if not updated:
            raise NotFound(f"job {job.name!r} not found")
        if self._on_save is not None:
            self._on_save(job)

    def delete_job(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id_of(name),))

    def list_jobs(self, page_size: int = 0, page_token: str = "", states: Iterable[int] = (),
                  page_bytes: int = MAX_PAGE_BYTES, project: str = DEFAULT_PROJECT,
                  ) -> tuple[list[gateway_pb2.Job], str]:
        """The project's jobs, newest first; keyset pagination so pages stay stable while jobs
        are added. A page ends at `page_size` jobs or before `page_bytes` of them (always at
        least one job)."""
        size = _page_size(page_size)
        where, args = ["project = ?"], [project]
        if page_token:
            created, key = _parse_token(page_token)
            where.append("(create_time < ? OR (create_time = ? AND id < ?))")
            args += [created, created, key]
        states = list(states)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += states
        sql = "SELECT id, create_time, job, spec FROM jobs WHERE " + " AND ".join(where)
        sql += " ORDER BY create_time DESC, id DESC LIMIT ?"
        jobs: list[gateway_pb2.Job] = []
        used, last, token = 0, ("", 0.0), ""
        with self._lock, closing(self._db.execute(sql, (*args, size + 1))) as rows:
            # Rows are read one at a time: a page never holds more than its budget and one row.
            for job_id, created, blob, spec in rows:
                row_bytes = len(blob) + len(spec or b"")
                if len(jobs) == size or (jobs and used + row_bytes > page_bytes):
                    token = _page_token(last[1], last[0])
                    break
                jobs.append(_job(blob, project, spec))
                used += row_bytes
                last = (job_id, created)
        return jobs, token

    def unfinished_jobs(self) -> list[gateway_pb2.Job]:
        """Every job not in a terminal state (a restarted gateway resumes these)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT job, project, spec FROM jobs WHERE state NOT IN "
                f"({','.join('?' * len(TERMINAL))}) ORDER BY create_time",
                tuple(TERMINAL)).fetchall()
        return [_job(*row) for row in rows]

    def job_ids(self, project: str) -> list[str]:
        """The ids of every job of the project, in any state."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE project = ?", (project,)).fetchall()
        return [row[0] for row in rows]

    def has_unfinished(self, project: str) -> bool:
        """Whether a job of the project is not in a terminal state."""
        with self._lock:
            row = self._db.execute(
                f"SELECT 1 FROM jobs WHERE project = ? AND state NOT IN "
                f"({','.join('?' * len(TERMINAL))}) LIMIT 1", (project, *TERMINAL)).fetchone()
        return row is not None

    def count_by_state(self) -> dict[int, int]:
        """Jobs per state (the metrics endpoint reads it at each scrape)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    # -- aliases ------------------------------------------------------------------------------

    def set_alias(self, name: str, target: gateway_pb2.AliasTarget,
                  expected_version: int | None, project: str = DEFAULT_PROJECT,
                  routing: gateway_pb2.AliasRouting | None = None) -> gateway_pb2.Alias:
        """Appends a version of the project's alias when the current one is `expected_version`
        (None skips the check). Each version has its own routing (None: all traffic to
        `target`)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                current = self._current_version(project, name)
                if expected_version is not None and current != expected_version:
                    raise Aborted(
                        f"alias {name!r} is at version {current}, not {expected_version}: "
                        "re-read it and retry" if current else
                        f"alias {name!r} does not exist (expected_version must be 0)"
                    )
                sequence = self._db.execute(
                    "INSERT INTO alias_versions (project, name, version, target, create_time, "
                    "routing) VALUES (?,?,?,?,?,?)",
                    (project, name, current + 1, target.SerializeToString(), time.time(),
                     routing.SerializeToString() if routing is not None else None)
                ).lastrowid
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            alias = self._alias(project, name)
            if self.on_alias is not None:  # under the lock: watchers see changes in order
                self.on_alias(sequence, gateway_pb2.AliasState(
                    name=name, version=alias.version, target=alias.target,
                    routing=alias.routing if alias.HasField("routing") else None,
                    update_time=alias.update_time, project=project))
            return alias

    def alias_snapshot(self, project: str | None) -> tuple[int, list[gateway_pb2.AliasState]]:
        """The current state of every alias of `project` (None: of every project), by project
        and name, and the change sequence it is at."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_STATE_COLUMNS} FROM alias_versions AS a "
                "WHERE (? IS NULL OR project = ?) AND version = (SELECT MAX(version) FROM "
                "alias_versions WHERE project = a.project AND name = a.name) "
                "ORDER BY project, name", (project, project)).fetchall()
            last = self._db.execute("SELECT MAX(rowid) FROM alias_versions").fetchone()[0]
        return last or 0, [_alias_state(*row)[1] for row in rows]

    def alias_changes_after(self, sequence: int, limit: int,
                            project: str | None) -> list[AliasChange] | None:
        """The changes to `project`'s aliases (None: every project's) after `sequence`, oldest
        first; None when there are more than `limit` or `sequence` is past the end of this
        store's log (another store's; a fresh one)."""
        with self._lock:
            last = self._db.execute("SELECT MAX(rowid) FROM alias_versions").fetchone()[0] or 0
            rows = self._db.execute(
                f"SELECT {_STATE_COLUMNS} FROM alias_versions WHERE rowid > ? "
                "AND (? IS NULL OR project = ?) ORDER BY rowid LIMIT ?",
                (sequence, project, project, limit + 1)).fetchall()
        if sequence > last or len(rows) > limit:
            return None
        return [_alias_state(*row) for row in rows]

    def get_alias(self, name: str, project: str = DEFAULT_PROJECT) -> gateway_pb2.Alias:
        with self._lock:
            if not self._current_version(project, name):
                raise NotFound(f"alias {name!r} not found")
            return self._alias(project, name)

    def list_aliases(self, page_size: int = 0, page_token: str = "",
                     project: str = DEFAULT_PROJECT) -> tuple[list[gateway_pb2.Alias], str]:
        size = _page_size(page_size)
        after = _parse_token(page_token)[1] if page_token else ""
        with self._lock:
            names = [r[0] for r in self._db.execute(
                "SELECT DISTINCT name FROM alias_versions WHERE project = ? AND name > ? "
                "ORDER BY name LIMIT ?", (project, after, size + 1))]
            aliases = [self._alias(project, n) for n in names[:size]]
        token = _page_token(0.0, names[size - 1]) if len(names) > size else ""
        return aliases, token

    # -- progressive promotions (services/gateway/rollouts.py) ---------------------------------

    def save_rollout(self, project: str, alias: str, rollout: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO rollouts (project, alias, rollout) "
                             "VALUES (?,?,?)", (project, alias, rollout))

    def delete_rollout(self, project: str, alias: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM rollouts WHERE project = ? AND alias = ?",
                             (project, alias))

    def rollouts(self) -> list[bytes]:
        """Every project's rollouts in flight (each one names its project)."""
        with self._lock:
            return [row[0] for row in self._db.execute(
                "SELECT rollout FROM rollouts ORDER BY project, alias")]

    def _current_version(self, project: str, name: str) -> int:
        row = self._db.execute("SELECT MAX(version) FROM alias_versions WHERE project = ? AND "
                               "name = ?", (project, name)).fetchone()
        return row[0] or 0

    def _alias(self, project: str, name: str) -> gateway_pb2.Alias:
        alias = gateway_pb2.Alias(name=name)
        for version, target, created, routing in self._db.execute(
            "SELECT version, target, create_time, routing FROM alias_versions WHERE project = ? "
            "AND name = ? ORDER BY version", (project, name)
        ):
            entry = alias.history.add(version=version,
                                      target=gateway_pb2.AliasTarget.FromString(target))
            if routing is not None:
                entry.routing.ParseFromString(routing)
            entry.create_time.FromNanoseconds(int(created * 1e9))
        latest = alias.history[-1]
        alias.version = latest.version
        alias.target.CopyFrom(latest.target)
        if latest.HasField("routing"):
            alias.routing.CopyFrom(latest.routing)
        alias.update_time.CopyFrom(latest.create_time)
        return alias


_STATE_COLUMNS = "rowid, project, name, version, target, create_time, routing"


def _alias_state(sequence: int, project: str, name: str, version: int, target: bytes,
                 created: float, routing: bytes | None) -> AliasChange:
    state = gateway_pb2.AliasState(name=name, version=version, project=project,
                                   target=gateway_pb2.AliasTarget.FromString(target))
    if routing is not None:
        state.routing.ParseFromString(routing)
    state.update_time.FromNanoseconds(int(created * 1e9))
    return sequence, state


def _without_spec(job: gateway_pb2.Job) -> bytes:
    """The job serialised without its spec (the spec column holds that), never copying it."""
    rest = gateway_pb2.Job()
    for field, value in job.ListFields():
        if field.name == "spec":
            continue
        if field.is_repeated:
            getattr(rest, field.name).extend(value)
        elif field.message_type is not None:
            getattr(rest, field.name).CopyFrom(value)
        else:
            setattr(rest, field.name, value)
    return rest.SerializeToString()


def _job(blob: bytes, project: str, spec: bytes | None) -> gateway_pb2.Job:
    job = gateway_pb2.Job.FromString(blob)
    job.project = project  # rows from before projects have it only in their column
    if spec is not None:
        job.spec.MergeFromString(spec)
    return job
