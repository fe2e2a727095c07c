"""How many jobs run at once: at most a cap per owner, the job's project; the rest wait PENDING,
first come first served (asyncio.Semaphore wakes its waiters in the order they asked).

`job_owner` is the one place that says whose cap a job counts against, and `cap` may answer
per owner (today every project gets the gateway's `max_running_jobs`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from distill.v1 import gateway_pb2
from services.common.auth import DEFAULT_PROJECT


def job_owner(job: gateway_pb2.Job) -> str:
    """Whose running-job cap the job counts against: its project's."""
    return job.project or DEFAULT_PROJECT


class JobSlots:
    def __init__(self, cap: Callable[[str], int]) -> None:
        self._cap = cap
        self._slots: dict[str, asyncio.Semaphore] = {}

    def of(self, owner: str) -> asyncio.Semaphore:
        """The owner's slots: `async with slots.of(owner):` runs a job in one."""
        if owner not in self._slots:
            self._slots[owner] = asyncio.Semaphore(self._cap(owner))
        return self._slots[owner]
