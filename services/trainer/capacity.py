"""How many trainings this replica runs at once, and which: the gateway's scheduler reads it."""

from __future__ import annotations

import threading

from services.common.errors import FailedPrecondition, ResourceExhausted


class Slot:
    """A held place; `release()` (idempotent) gives it back. Also a context manager."""

    def __init__(self, capacity: Capacity, job_id: str) -> None:
        self._capacity = capacity
        self.job_id = job_id
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._capacity._release(self.job_id)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Capacity:
    """At most `capacity` trainings at once; one more gets RESOURCE_EXHAUSTED at once."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._active: list[str] = []

    def acquire(self, job_id: str) -> Slot:
        with self._lock:
            if job_id in self._active:
                raise FailedPrecondition(f"job {job_id!r} is already training on this replica")
            if len(self._active) >= self.capacity:
                raise ResourceExhausted(
                    f"trainer at capacity ({len(self._active)} of {self.capacity} trainings "
                    "running); retry later or on another replica"
                )
            self._active.append(job_id)
        return Slot(self, job_id)

    def _release(self, job_id: str) -> None:
        with self._lock:
            self._active.remove(job_id)

    def active_job_ids(self) -> list[str]:
        with self._lock:
            return list(self._active)
