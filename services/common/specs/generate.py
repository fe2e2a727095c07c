"""A Generate request (or a DistillSpec's generation fields) checked, with its defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from distill.v1 import common_pb2, generator_pb2
from services.common.errors import InvalidArgument
from services.common.models import PriceOverrides
from services.common.providers.limits import Limits
from services.common.providers.spec import ModelConfig, resolve_model_spec
from services.common.specs import names
from services.common.specs.fields import (
    MAX_SYSTEM_PROMPT_BYTES,
    int_field,
    join,
    model_text,
    text_field,
)
from services.common.specs.members import Member, WithCommittee

DEFAULT_N_SAMPLES = 4
MAX_N_SAMPLES = 16
DEFAULT_TEACHER_TEMPERATURE = 0.8
# RateLimits' defaults are Limits' own (16 calls in flight, 6 retries).
DEFAULT_MAX_CONCURRENCY = Limits.max_concurrency
MAX_CONCURRENCY = 256
DEFAULT_MAX_RETRIES = Limits.max_retries
MAX_RETRIES = 20


@dataclass(frozen=True)
class GenerateSpec(WithCommittee):
    """What a generation runs, without its prompts (they come from a dataset or inline)."""

    job_id: str
    committee: tuple[Member, ...]  # one member for a request with a single teacher
    system_prompt: str
    limits: Limits


def n_samples(value: int, field: str = "n_samples") -> int:
    """0 means the default."""
    n = value or DEFAULT_N_SAMPLES
    if not 1 <= n <= MAX_N_SAMPLES:
        raise InvalidArgument(f"{field}: must be in [1, {MAX_N_SAMPLES}] (0 means "
                              f"{DEFAULT_N_SAMPLES}), got {value}")
    return n


def teacher(spec: common_pb2.ModelSpec, field: str = "teacher", *, vary: bool,
            price_overrides: PriceOverrides | None = None) -> ModelConfig:
    """`vary`: the samples must differ (best-of-N), so temperature 0 is refused."""
    model_text(spec, field)
    config = resolve_model_spec(spec, field=field, default_temperature=DEFAULT_TEACHER_TEMPERATURE,
                                price_overrides=price_overrides)
    if vary and config.temperature <= 0:
        raise InvalidArgument(
            f"{field}.temperature: must be > 0 so the samples differ (got {config.temperature}):"
            " at temperature 0 every sample is the same answer")
    return config


def rate_limits(limits: common_pb2.RateLimits, field: str = "limits", *,
                default_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                max_concurrency: int = MAX_CONCURRENCY) -> Limits:
    concurrency = int_field(limits, "max_concurrency", join(field, "max_concurrency"),
                            default_concurrency, low=1, high=max_concurrency)
    for name in ("requests_per_minute", "tokens_per_minute"):
        if getattr(limits, name) < 0:
            raise InvalidArgument(f"{join(field, name)}: must be >= 0 (0: unlimited), got "
                                  f"{getattr(limits, name)}")
    retries = int_field(limits, "max_retries", join(field, "max_retries"), DEFAULT_MAX_RETRIES,
                        low=0, high=MAX_RETRIES)
    return Limits(concurrency, limits.requests_per_minute, limits.tokens_per_minute, retries)


def generate_spec(request: generator_pb2.GenerateRequest, *,
                  teacher_specs: Sequence[common_pb2.ModelSpec] | None = None,
                  default_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                  max_concurrency: int = MAX_CONCURRENCY,
                  price_overrides: PriceOverrides | None = None) -> GenerateSpec:
    """Checks every field but the prompt source (the generator reads it) and applies the
    defaults. `teacher_specs` replace the teachers' specs in order (local copies of GGUF
    artifacts)."""
    # Imported here: the committee's checks are built from this module's n_samples and teacher.
    from services.common.specs.committee import committee

    return GenerateSpec(
        job_id=names.job_id(request.job_id, optional=True),
        committee=committee(request.committee, request.teacher, request.n_samples, "",
                            price_overrides=price_overrides, local_specs=teacher_specs),
        system_prompt=text_field(request.system_prompt, "system_prompt",
                                 MAX_SYSTEM_PROMPT_BYTES),
        limits=rate_limits(request.limits, default_concurrency=default_concurrency,
                           max_concurrency=max_concurrency),
    )
