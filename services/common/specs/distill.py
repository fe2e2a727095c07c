"""A whole DistillSpec checked, with its defaults: what a gateway job (or its estimate) runs.

Only the request itself is checked here. What needs the world (the dataset's lines, API keys in
the environment, the student's files, a trainer's memory) is the gateway's preflight.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.v1 import gateway_pb2
from services.common.errors import InvalidArgument
from services.common.providers.limits import Limits
from services.common.specs import generate, names
from services.common.specs.committee import committee
from services.common.specs.expansion import ExpansionSpec, expansion_spec
from services.common.specs.export import ExportSettings, export_settings
from services.common.specs.fields import (
    MAX_NAME_BYTES,
    MAX_SYSTEM_PROMPT_BYTES,
    artifact_text,
    float_field,
    text_field,
)
from services.common.specs.judge import JudgeSpec, judge_spec
from services.common.specs.members import Member, WithCommittee
from services.common.specs.routing import Progressive, progressive
from services.common.specs.train import TrainSettings, student_model, train_settings

DEFAULT_HOLDOUT_FRACTION = 0.1
MAX_HOLDOUT_FRACTION = 0.5
DEFAULT_PROMOTE_MIN_RATIO = 0.95
MAX_PROMOTE_MIN_RATIO = 100.0
# The absolute floor where the held-out rows have reference answers: a student that gets under
# half of them right is not promoted, however close it is to its teacher.
DEFAULT_PROMOTE_MIN_PASS_RATE = 0.5


@dataclass(frozen=True)
class EvalSpec:
    held_out_uri: str  # "" : a fraction of the dataset is held out
    holdout_fraction: float  # 0: no evaluation (unless held_out_uri is given)
    promote_min_ratio: float
    # None: DEFAULT_PROMOTE_MIN_PASS_RATE where every held-out row has a reference, else 0.
    promote_min_pass_rate: float | None
    seed: int

    @property
    def enabled(self) -> bool:
        return bool(self.held_out_uri) or self.holdout_fraction > 0


@dataclass(frozen=True)
class DistillPlan(WithCommittee):
    task_type: int  # gateway_pb2.TaskType
    committee: tuple[Member, ...]  # one member for a spec with a single teacher
    system_prompt: str
    limits: Limits
    judge: JudgeSpec
    student_model: str
    train: TrainSettings
    export: ExportSettings
    eval: EvalSpec
    budget_usd: float | None
    promote_alias: str  # "": no promotion
    progressive: Progressive | None  # None: promote all at once
    expansion: ExpansionSpec


def distill_plan(spec: gateway_pb2.DistillSpec, field: str = "spec") -> DistillPlan:
    """Checks every field of `spec` and applies the defaults; InvalidArgument names the field
    (`spec.n_samples`, `spec.training.batch_size`, ...)."""
    if not spec.HasField("dataset") or not spec.dataset.uri:
        raise InvalidArgument(f"{field}.dataset: required (upload it with UploadDataset)")
    artifact_text(spec.dataset, f"{field}.dataset")
    text_field(spec.display_name, f"{field}.display_name", MAX_NAME_BYTES)
    text_field(spec.system_prompt, f"{field}.system_prompt", MAX_SYSTEM_PROMPT_BYTES)
    if spec.HasField("budget_usd") and not spec.budget_usd > 0:
        raise InvalidArgument(f"{field}.budget_usd: must be > 0, got {spec.budget_usd}")
    rollout = progressive(spec.progressive, f"{field}.progressive")
    if rollout is not None and not spec.promote_alias:
        raise InvalidArgument(f"{field}.progressive: needs promote_alias (the alias to promote "
                              "step by step)")
    return DistillPlan(
        task_type=spec.task_type,
        # A job's teachers sample above temperature 0 always (its best-of-N needs variety).
        committee=committee(spec.committee, spec.teacher, spec.n_samples, field, vary=True),
        system_prompt=spec.system_prompt,
        limits=generate.rate_limits(spec.limits, f"{field}.limits"),
        judge=judge_spec(spec.judge, f"{field}.judge"),
        student_model=student_model(spec.student_model, f"{field}.student_model"),
        train=train_settings(spec.lora, spec.bond, spec.training, field),
        export=export_settings(spec.export, f"{field}.export"),
        eval=eval_spec(spec.eval, f"{field}.eval"),
        budget_usd=spec.budget_usd if spec.HasField("budget_usd") else None,
        promote_alias=(names.alias_name(spec.promote_alias, f"{field}.promote_alias")
                       if spec.promote_alias else ""),
        progressive=rollout,
        expansion=expansion_spec(spec.expansion, f"{field}.expansion"),
    )


def eval_spec(settings: gateway_pb2.EvalSettings, field: str = "spec.eval") -> EvalSpec:
    fraction = float_field(settings, "holdout_fraction", f"{field}.holdout_fraction",
                           DEFAULT_HOLDOUT_FRACTION, low=0.0, high=MAX_HOLDOUT_FRACTION)
    ratio = float_field(settings, "promote_min_ratio", f"{field}.promote_min_ratio",
                        DEFAULT_PROMOTE_MIN_RATIO, low=0.0, high=MAX_PROMOTE_MIN_RATIO)
    artifact_text(settings.held_out, f"{field}.held_out")
    pass_rate = float_field(settings, "promote_min_pass_rate", f"{field}.promote_min_pass_rate",
                            None, low=0.0, high=1.0)
    return EvalSpec(settings.held_out.uri, fraction, ratio, pass_rate, settings.seed)
