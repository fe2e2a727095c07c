"""Everything a job needs, checked before any money is spent (Distill and Estimate).

Errors name the field: `spec.dataset` (with JSONL line numbers), `spec.teacher.api_key_env`,
`spec.student_model`, `spec.training.batch_size`, ... A job is only created when all pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.v1 import common_pb2, gateway_pb2, judge_pb2, trainer_pb2
from services.common import errors
from services.common.datasets import load_dataset
from services.common.models import resolve_student
from services.common.providers.spec import read_api_key, resolve_model_spec
from services.common.storage import ArtifactStore
from services.gateway import evaluation
from services.gateway.aliases import validate_name
from services.gateway.estimate import estimate
from services.judge.llm_judge import Reply
from services.judge.session import Config as JudgeConfig
from services.judge.spec import build_judge
from services.common import train_memory as memory
from services.common.specs.train import TrainConfig

_QUANTS = set(common_pb2.QuantizationType.values()) - {
    common_pb2.QUANTIZATION_TYPE_UNSPECIFIED}


@dataclass(frozen=True)
class Checked:
    prompts: list[common_pb2.Prompt]
    estimate: gateway_pb2.EstimateResponse


def load_prompts(spec: gateway_pb2.DistillSpec, store: ArtifactStore) -> list[common_pb2.Prompt]:
    if not spec.HasField("dataset") or not spec.dataset.uri:
        raise errors.InvalidArgument("spec.dataset: required (upload it with UploadDataset)")
    try:
        return load_dataset(store, spec.dataset, what="spec.dataset")
    except errors.NotFound:
        raise errors.NotFound(f"spec.dataset: no dataset at {spec.dataset.uri}") from None


def check(spec: gateway_pb2.DistillSpec, store: ArtifactStore, cache_dir: Path,
          batch_api: bool = False,
          trainer: trainer_pb2.GetTrainerStatusResponse | None = None) -> Checked:
    """Raises the first problem found; returns the parsed prompts and the estimate.

    With a trainer's status, the student must also fit that trainer's memory (the trainer
    checks again before loading; this refuses the job before any teacher call)."""
    prompts = load_prompts(spec, store)
    if not 0 <= spec.n_samples <= 16:
        raise errors.InvalidArgument(f"spec.n_samples: 1..16 (0 means 4), got {spec.n_samples}")
    teacher = resolve_model_spec(spec.teacher, field="spec.teacher", default_temperature=0.8)
    if teacher.temperature <= 0:
        raise errors.InvalidArgument("spec.teacher.temperature: must be > 0 so the N samples "
                                     "differ (best-of-N needs variety)")
    read_api_key(teacher, field="spec.teacher")
    _check_judge(spec.judge)
    try:
        student_dir = resolve_student(spec.student_model, cache_dir)
    except errors.NotFound as exc:
        # An unknown model name is bad input in this request (NOT_FOUND is for jobs/aliases).
        raise errors.InvalidArgument(f"spec.student_model: {exc}") from None
    except errors.DistillError as exc:
        raise type(exc)(f"spec.student_model: {exc}") from None
    # The trainer's own checks of LoRA, BOND and training settings; the curated set does not
    # exist yet, so the dataset's ref stands in for it.
    train_config = TrainConfig.from_request(trainer_pb2.TrainRequest(
        job_id="preflight", curated=spec.dataset, student_model=spec.student_model,
        lora=spec.lora, bond=spec.bond, training=spec.training))
    if trainer is not None:
        device_type = "cuda" if trainer.device.startswith("cuda") else "cpu"
        backend = "unsloth" if device_type == "cuda" and "unsloth" in trainer.backends else "trl"
        memory.check(student_dir, train_config, backend, device_type, trainer.memory_gb)
    for q in spec.export.quantizations:
        if q not in _QUANTS:
            raise errors.InvalidArgument(f"spec.export.quantizations: unknown value {q}")
    if spec.promote_alias:
        validate_name(spec.promote_alias)
    held_out = evaluation.check(spec, prompts, store)
    if spec.HasField("budget_usd") and spec.budget_usd <= 0:
        raise errors.InvalidArgument(f"spec.budget_usd: must be > 0, got {spec.budget_usd}")
    result = estimate(spec, prompts, batch_api, held_out)
    if spec.HasField("budget_usd") and result.total_usd_low > spec.budget_usd:
        raise errors.ResourceExhausted(
            f"spec.budget_usd: {spec.budget_usd:g} USD is under even the low estimate "
            f"({result.total_usd_low:.2f}-{result.total_usd_high:.2f} USD); nothing was spent")
    return Checked(prompts, result)


def _check_judge(config: judge_pb2.JudgeConfig) -> None:
    JudgeConfig.from_proto(config)

    def validate_model(model: common_pb2.ModelSpec):
        resolved = resolve_model_spec(model, field="spec.judge.judge.llm.model",
                                      default_temperature=0.0)
        read_api_key(resolved, field="spec.judge.judge.llm.model")

        async def never_called(messages, attempt) -> Reply:  # preflight builds, never calls
            raise AssertionError("preflight does not call models")

        return never_called

    if not config.HasField("judge"):
        raise errors.InvalidArgument("spec.judge.judge: required (e.g. reference, llm, "
                                     "json_schema)")
    build_judge(config.judge, validate_model, field="spec.judge.judge")
