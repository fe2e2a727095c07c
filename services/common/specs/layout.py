"""Where a job's artifacts live in the store: every `jobs/{id}/...` key is built here."""

from __future__ import annotations

from dataclasses import dataclass

JOBS_FOLDER = "jobs/"
# One JSON line per optimizer step, in each checkpoint and in the adapter folder (where the job
# report reads it). Plain text: the exporter's pickle checks pass it.
TRAINING_LOG = "training_log.jsonl"


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
    def evaluation(self) -> str:
        return f"{self.prefix}evaluation.jsonl"

    def eval_run_id(self, part: str) -> str:
        """The job id the evaluation's own generator and judge runs write under
        (`{id}-eval-{model}`, `{id}-eval`): outside the job's folder, so that a stage told the
        run's id writes nowhere in it."""
        return f"{self.job_id}-eval-{part}" if part else f"{self.job_id}-eval"

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
