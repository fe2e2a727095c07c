"""How many jobs run at once: at most a cap per owner; the rest wait PENDING, first come first
served (asyncio.Semaphore wakes its waiters in the order they asked).

Every job's owner is "default" until jobs belong to projects; then `job_owner` returns the job's
project and `cap` may answer per project.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from distill.v1 import gateway_pb2

DEFAULT_OWNER = "default"


def job_owner(job: gateway_pb2.Job) -> str:
    """Whose running-job cap the job counts against."""
    return DEFAULT_OWNER


class JobSlots:
    def __init__(self, cap: Callable[[str], int]) -> None:
        self._cap = cap
        self._slots: dict[str, asyncio.Semaphore] = {}

    def of(self, owner: str) -> asyncio.Semaphore:
        """The owner's slots: `async with slots.of(owner):` runs a job in one."""
        if owner not in self._slots:
            self._slots[owner] = asyncio.Semaphore(self._cap(owner))
        return self._slots[owner]
