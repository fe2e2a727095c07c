"""The job event log: what happened to a job and when (ListJobEvents, `distill logs`).

`JobEvents.record(job)` sees every saved job snapshot (the job store calls it) and writes an
event only when something a user follows changed: the state, the progress message (a step
inside a state: waiting for a trainer, an export stage, ...), a new job warning, the error.
Counters (prompts done, steps) are not events; WatchJob has them.

Retries and warnings the gateway logs while it runs a job (a stage stream run again, a training
moved to another replica) are recorded by `LogRecorder`, a logging handler: the stages log as
they always did and need not know about the event log. It finds the job from the runner's task
(`running(name)`) or from the record's `job_id`.
"""

from __future__ import annotations

import base64
import contextvars
import logging
import sqlite3
import threading
import time
from pathlib import Path

from distill.v1 import gateway_pb2
from services.common.errors import InvalidArgument
from services.common.specs.names import job_id_of, job_name
from services.gateway.job_store import TERMINAL

MAX_PAGE = 1000
DEFAULT_PAGE = 100
STATE = gateway_pb2.JOB_EVENT_KIND_STATE
PROGRESS = gateway_pb2.JOB_EVENT_KIND_PROGRESS
RETRY = gateway_pb2.JOB_EVENT_KIND_RETRY
WARNING = gateway_pb2.JOB_EVENT_KIND_WARNING
ERROR = gateway_pb2.JOB_EVENT_KIND_ERROR
# Log record attributes that mark work being run again (services/gateway/stages.py,
# trainer_pool.py).
_RETRY_ATTRIBUTES = ("attempt", "moves")
# Log record attributes worth keeping in the event's message.
_DETAIL_ATTRIBUTES = ("stage", "replica", "reason", "attempt")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    time REAL NOT NULL,
    kind INTEGER NOT NULL,
    state INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id, seq);
"""

_running_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)


def running(name: str) -> None:
    """Marks the current task (and the tasks it starts) as running job `name`."""
    _running_job.set(name)


def _token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"event|{seq}".encode()).decode()


def _after(token: str) -> int:
    try:
        tag, seq = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        if tag != "event":
            raise ValueError(tag)
        return int(seq)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token: not a token this server issued") from None


class JobEvents:
    def __init__(self, path: Path | str) -> None:
        """`path`: the job store's SQLite file (a table of its own there), or ":memory:"."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        # What the last snapshot of each job showed: (state, message, warnings, error).
        self._seen: dict[str, tuple[int, str, int, str]] = {}

    def close(self) -> None:
        self._db.close()

    def add(self, name: str, kind: int, state: int, message: str) -> None:
        """Appends one event, timed now."""
        with self._lock:
            self._db.execute(
                "INSERT INTO job_events (job_id, time, kind, state, message) VALUES (?,?,?,?,?)",
                (job_id_of(name), time.time(), kind, state, message))

    def record(self, job: gateway_pb2.Job) -> None:
        """The events a saved snapshot adds to the previous one of the same job."""
        state, message, error = job.state, job.progress.message, job.error.message
        before = self._seen.get(job.name) or self._last_logged(job.name)
        self._seen[job.name] = (state, message, len(job.warnings), error)
        old_state, old_message, old_warnings, old_error = before
        if state != old_state:
            self.add(job.name, STATE, state, gateway_pb2.JobState.Name(state)
                     .removeprefix("JOB_STATE_").lower())
        if message and (message != old_message or state != old_state) and state not in TERMINAL:
            self.add(job.name, PROGRESS, state, message)
        for warning in job.warnings[old_warnings:]:
            self.add(job.name, WARNING, state, warning)
        if error and error != old_error:
            self.add(job.name, ERROR, state, f"{job.error.code}: {error}")

    def _last_logged(self, name: str) -> tuple[int, str, int, str]:
        """After a restart: the state and step the log last showed, so a resumed job does not
        repeat them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, state, message FROM job_events WHERE job_id = ? AND kind IN (?,?,?) "
                "ORDER BY seq", (job_id_of(name), STATE, PROGRESS, WARNING)).fetchall()
        state, message, warnings = gateway_pb2.JOB_STATE_UNSPECIFIED, "", 0
        for kind, row_state, row_message in rows:
            state = row_state
            message = row_message if kind == PROGRESS else message
            warnings += kind == WARNING
        return state, message, warnings, ""

    def list(self, job: gateway_pb2.Job, page_size: int = 0,
             page_token: str = "") -> tuple[list[gateway_pb2.JobEvent], str]:
        """Oldest first. The next page token is empty only once the job has ended and this page
        holds its last event; while it runs there is always one, to follow the log."""
        if page_size < 0:
            raise InvalidArgument(f"page_size: must be >= 0, got {page_size}")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        after = _after(page_token) if page_token else 0
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, time, kind, state, message FROM job_events WHERE job_id = ? "
                "AND seq > ? ORDER BY seq LIMIT ?",
                (job_id_of(job.name), after, size + 1)).fetchall()
        events = []
        for _, at, kind, state, message in rows[:size]:
            event = gateway_pb2.JobEvent(kind=kind, state=state, message=message)
            event.time.FromNanoseconds(int(at * 1e9))
            events.append(event)
        last = rows[min(len(rows), size) - 1][0] if rows else after
        more = len(rows) > size or job.state not in TERMINAL
        return events, _token(last) if more else ""

    def state_of(self, name: str) -> int:
        """The state of the job's last snapshot seen here (UNSPECIFIED when none was)."""
        seen = self._seen.get(name)
        return seen[0] if seen else gateway_pb2.JOB_STATE_UNSPECIFIED

    def delete(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM job_events WHERE job_id = ?",
                             (job_id_of(name),))
        self._seen.pop(name, None)


class LogRecorder(logging.Handler):
    """Gateway log records about a job at WARNING and above, and retries, as job events."""

    def __init__(self, events: JobEvents) -> None:
        super().__init__(logging.INFO)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        retry = any(hasattr(record, name) for name in _RETRY_ATTRIBUTES)
        if record.levelno < logging.WARNING and not retry:
            return
        name = _running_job.get()
        if name is None and isinstance(job_id := getattr(record, "job_id", None), str):
            name = job_name(job_id)
        if name is None:
            return
        details = ", ".join(f"{a} {getattr(record, a)}" for a in _DETAIL_ATTRIBUTES
                            if hasattr(record, a))
        message = record.getMessage() + (f" ({details})" if details else "")
        kind = RETRY if retry else ERROR if record.levelno >= logging.ERROR else WARNING
        try:
            self.events.add(name, kind, self.events.state_of(name), message)
        except sqlite3.Error:
            self.handleError(record)
