"""GetJobMetrics: a job's training curve and evaluation figures as data (`distill metrics`).

The curve is the trainer's training log, read as the report reads it (services/gateway/report.py).
"""

from __future__ import annotations

from distill.v1 import gateway_pb2
from services.common.storage import ArtifactStore
from services.gateway import report

# The training log's fields that TrainingStep carries (the rest stay in the report).
STEP_FIELDS = ("epoch", "loss", "sft_loss", "preference_loss", "kl_loss", "learning_rate",
               "tokens_per_second")


def job_metrics(job: gateway_pb2.Job,
                artifacts: ArtifactStore) -> gateway_pb2.GetJobMetricsResponse:
    result = gateway_pb2.GetJobMetricsResponse()
    training = report.training_section(job, artifacts)
    if training["available"]:
        for row in training["steps"]:
            result.training.add(step=row["step"], **{f: row[f] for f in STEP_FIELDS
                                                     if row[f] is not None})
    else:
        result.training_note = training["note"]
    if job.HasField("evaluation"):
        result.evaluation.CopyFrom(job.evaluation)
    return result
