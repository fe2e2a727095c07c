"""Everything a job needs, checked before any money is spent (Distill and Estimate).

The spec's own fields are checked by the spec layer (services/common/specs/distill.py); here
is what needs the world: the dataset's lines, the API keys in this service's environment, the
student's files, a trainer's memory, the budget against the estimate. Distill refuses on the
first problem; Estimate prices the job anyway and lists each problem as a warning that names
the fix. Errors name the field: `spec.dataset` (with JSONL line numbers),
`spec.teacher.api_key_env`, `spec.student_model`, `spec.training.batch_size`, ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from distill.v1 import gateway_pb2, trainer_pb2
from services.common import errors, train_memory
from services.common.datasets import Prompts, load_dataset
from services.common.models import list_models, resolve_student
from services.common.providers.endpoints import EndpointPolicy, authorize
from services.common.providers.spec import ModelConfig, read_api_key
from services.common.specs.distill import DistillPlan, distill_plan
from services.common.specs.expansion import check_target
from services.common.specs.judge import llm_judges
from services.common.storage import ArtifactStore
from services.gateway import evaluation
from services.gateway.estimate import estimate as price


@dataclass(frozen=True)
class Checked:
    plan: DistillPlan
    prompts: Prompts
    estimate: gateway_pb2.EstimateResponse


@dataclass(frozen=True)
class Problem:
    """What Distill would refuse, and what fixes it (Estimate shows both)."""

    error: errors.DistillError
    fix: str


def load_prompts(spec: gateway_pb2.DistillSpec, store: ArtifactStore) -> Prompts:
    if not spec.HasField("dataset") or not spec.dataset.uri:
        raise errors.InvalidArgument("spec.dataset: required (upload it with UploadDataset)")
    try:
        return load_dataset(store, spec.dataset, what="spec.dataset")
    except errors.NotFound:
        raise errors.NotFound(f"spec.dataset: no dataset at {spec.dataset.uri}") from None


def check(spec: gateway_pb2.DistillSpec, store: ArtifactStore, cache_dir: Path,
          batch_api: bool = False,
          trainer: trainer_pb2.GetTrainerStatusResponse | None = None, *,
          policy: EndpointPolicy) -> Checked:
    """Raises the first problem found; returns the plan, the parsed prompts and the estimate.

    With a trainer's status, the student must also fit that trainer's memory (the trainer
    checks again before loading; this refuses the job before any teacher call)."""
    plan, prompts, held_out = _request(spec, store)
    for problem in problems(plan, cache_dir, policy, trainer):
        raise problem.error
    result = price(plan, prompts, batch_api, held_out)
    if plan.budget_usd is not None and result.total_usd_low > plan.budget_usd:
        raise errors.ResourceExhausted(_over_budget(plan.budget_usd, result))
    return Checked(plan, prompts, result)


def estimate(request: gateway_pb2.EstimateRequest, store: ArtifactStore,
             cache_dir: Path, policy: EndpointPolicy) -> gateway_pb2.EstimateResponse:
    """The price of the job, also when Distill would refuse it for something other than the
    request itself (a missing API key, a student not on this machine, the budget): each such
    problem is a warning naming the fix. Needs no credentials."""
    plan, prompts, held_out = _request(request.spec, store)
    result = price(plan, prompts, request.batch_api, held_out)
    found = list(problems(plan, cache_dir, policy))
    if plan.budget_usd is not None and result.total_usd_low > plan.budget_usd:
        found.append(Problem(errors.ResourceExhausted(_over_budget(plan.budget_usd, result)),
                             "raise spec.budget_usd or make the job smaller"))
    result.warnings.extend(f"Distill would refuse this job: {p.error} -> {p.fix}" for p in found)
    return result


def _request(spec: gateway_pb2.DistillSpec, store: ArtifactStore
             ) -> tuple[DistillPlan, Prompts, int | None]:
    """The request's own checks: its fields, its dataset and held-out set."""
    plan = distill_plan(spec)
    prompts = load_prompts(spec, store)
    check_target(plan.expansion, len(prompts))
    return plan, prompts, evaluation.check(plan.eval, prompts, store)


def problems(plan: DistillPlan, cache_dir: Path, policy: EndpointPolicy,
             trainer: trainer_pb2.GetTrainerStatusResponse | None = None) -> Iterator[Problem]:
    """What this deployment lacks for the job, in the order Distill checks it. A model's
    endpoint is checked with the rules the generator and the judge apply before calling it."""
    models = [(m.teacher, m.field) for m in plan.committee]
    models += [(llm.model, llm.field) for llm in llm_judges(plan.judge.judge)]
    if plan.expansion.judge is not None:
        models += [(llm.model, llm.field) for llm in llm_judges(plan.expansion.judge)]
    for model, field in models:
        try:
            bound = authorize(model, policy, field=field)
        except errors.PermissionDenied as exc:
            yield Problem(exc, _ENDPOINT_FIX)
            continue
        try:
            read_api_key(bound, field=field)
        except errors.DistillError as exc:
            yield Problem(exc, _key_fix(bound, field))
    try:
        student_dir = _student(plan.student_model, cache_dir)
    except errors.DistillError as exc:
        yield Problem(exc, _STUDENT_FIX)
        return
    if trainer is not None:
        device_type = "cuda" if trainer.device.startswith("cuda") else "cpu"
        backend = "unsloth" if device_type == "cuda" and "unsloth" in trainer.backends else "trl"
        try:
            train_memory.check(student_dir, plan.train, backend, device_type, trainer.memory_gb,
                               student=plan.student_model)
        except errors.DistillError as exc:
            yield Problem(exc, "use a smaller student, batch_size or max_seq_length, or a "
                          "trainer with more memory")


def _student(name: str, cache_dir: Path) -> Path:
    try:
        return resolve_student(name, cache_dir)
    except errors.NotFound as exc:
        # An unknown model name is bad input in this request (NOT_FOUND is for jobs/aliases).
        raise errors.InvalidArgument(f"spec.student_model: {exc}") from None
    except errors.DistillError as exc:
        raise type(exc)(f"spec.student_model: {exc}") from None


_STUDENT_FIX = ("name a student in the registry that this gateway has offline ("
                + ", ".join(m.name for m in list_models("student")) +
                ") or a local Hugging Face model folder")


_ENDPOINT_FIX = ("name an endpoint configured on this server (providers), or have the "
                 "operator allow the base_url's host")


def _key_fix(model: ModelConfig, field: str) -> str:
    return (f"set {model.api_key_env} in the gateway's environment (and the "
            f"{'judge' if '.judge' in field else 'generator'}'s), or name another "
            f"configured endpoint in {field}.endpoint")


def _over_budget(budget: float, result: gateway_pb2.EstimateResponse) -> str:
    return (f"spec.budget_usd: {budget:g} USD is under even the low estimate "
            f"({result.total_usd_low:.2f}-{result.total_usd_high:.2f} USD); nothing was spent")
