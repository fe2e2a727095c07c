"""The one owner of a job's state: nothing else changes `job.state`, saves the row or publishes
the snapshot. Creation, stage entry, progress, spend, success, failure and cancellation all go
through `Lifecycle`, so the rules between them live here: a job CancelJob asked to stop stays
CANCELLING whatever its runner reports, and ends CANCELLED, never FAILED or SUCCEEDED.
"""

from __future__ import annotations

from distill.v1 import common_pb2, gateway_pb2
from services.common import errors
from services.common.spend import NOTHING, Spend
from services.gateway.job_store import TERMINAL, JobStore, now
from services.gateway.watch import JobHub

State = gateway_pb2.JobState


class Lifecycle:
    def __init__(self, store: JobStore, hub: JobHub) -> None:
        self.store = store
        self.hub = hub
        # Jobs CancelJob asked to stop: no runner event may overwrite their CANCELLING state.
        self._cancelling: set[str] = set()

    def create(self, job: gateway_pb2.Job) -> tuple[gateway_pb2.Job, bool]:
        """Stores a new PENDING job (or finds the one with its request id)."""
        job.state = gateway_pb2.JOB_STATE_PENDING
        job.progress.CopyFrom(common_pb2.Progress(message="queued"))
        job.create_time.CopyFrom(now())
        job.update_time.CopyFrom(job.create_time)
        job, created = self.store.create_job(job)
        if created:
            self.hub.publish(job)
        return job, created

    def update(self, job: gateway_pb2.Job) -> None:
        """Saves and publishes the job's progress, outputs and spend as they are now."""
        if job.name in self._cancelling and job.state not in TERMINAL:
            job.state = gateway_pb2.JOB_STATE_CANCELLING
        _total_cost(job)
        self.store.save_job(job)
        self.hub.publish(job)

    def enter(self, job: gateway_pb2.Job, state: State, unit: str, message: str, *,
              done: int = 0, total: int = 0) -> None:
        """The job starts a stage (or, JUDGING, the part of one that is left)."""
        job.state = state
        job.progress.CopyFrom(common_pb2.Progress(unit=unit, message=message, done=done,
                                                  total=total))
        self.update(job)

    def charge(self, job: gateway_pb2.Job, *, teacher: Spend = NOTHING,
               judge: Spend = NOTHING) -> None:
        """Adds what calls paid to the job (not saved: the next update saves it); past the
        budget it raises ResourceExhausted, which fails the job and so stops the spending."""
        if teacher != NOTHING:
            job.teacher_usage.CopyFrom((Spend.of(job.teacher_usage) + teacher).to_proto())
        if judge != NOTHING:
            job.judge_usage.CopyFrom((Spend.of(job.judge_usage) + judge).to_proto())
        cost = _total_cost(job)
        if job.spec.HasField("budget_usd") and cost >= job.spec.budget_usd:
            raise errors.ResourceExhausted(
                f"budget_usd {job.spec.budget_usd:g} reached (accrued {cost:.4f} USD); "
                "spending stopped")

    def succeed(self, job: gateway_pb2.Job) -> None:
        job.state = gateway_pb2.JOB_STATE_SUCCEEDED
        job.progress.Clear()
        job.progress.message = "done"
        self.update(job)

    def fail(self, job: gateway_pb2.Job, code: str, message: str) -> None:
        """The stage the job is in failed; a stage that ended because the job was cancelled
        ends it CANCELLED instead."""
        if self.cancelling(job.name):
            self.stopped(job)
            return
        job.error.CopyFrom(gateway_pb2.JobError(code=code, message=message, stage=job.state))
        job.state = gateway_pb2.JOB_STATE_FAILED
        self.update(job)

    def cancelling(self, name: str) -> bool:
        return name in self._cancelling

    def request_cancel(self, name: str) -> None:
        """CancelJob's first half: the job is CANCELLING from now on (its runner is stopped
        next); FAILED_PRECONDITION when it has already ended."""
        job = self.store.get_job(name)
        if job.state in TERMINAL:
            raise errors.FailedPrecondition(f"{name} is already {State.Name(job.state)}")
        self._cancelling.add(name)  # before the save: no runner event may undo it
        if job.state != gateway_pb2.JOB_STATE_CANCELLING:
            job.state = gateway_pb2.JOB_STATE_CANCELLING
            self.update(job)

    def finish_cancel(self, name: str) -> gateway_pb2.Job:
        """CancelJob's second half, once the runner (if any) has stopped."""
        job = self.store.get_job(name)
        if job.state == gateway_pb2.JOB_STATE_CANCELLING:  # no runner was active
            self.stopped(job)
        self._cancelling.discard(name)
        return job

    def stopped(self, job: gateway_pb2.Job) -> None:
        """A cancelled job whose work has stopped."""
        job.state = gateway_pb2.JOB_STATE_CANCELLED
        job.progress.message = "cancelled"
        self.update(job)
        self._cancelling.discard(job.name)

    def unfinished(self) -> list[gateway_pb2.Job]:
        """After a restart, the jobs to resume; one a CancelJob was stopping is CANCELLED."""
        resumed = []
        for job in self.store.unfinished_jobs():
            if job.state == gateway_pb2.JOB_STATE_CANCELLING:
                self.stopped(job)
            else:
                self.hub.publish(job)
                resumed.append(job)
        return resumed


def _total_cost(job: gateway_pb2.Job) -> float:
    """Sets (and returns) the job's cost: its teacher's and its judge's."""
    job.cost_usd = job.teacher_usage.cost_usd + job.judge_usage.cost_usd
    return job.cost_usd
