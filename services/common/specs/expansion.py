"""A DistillSpec's `expansion` settings checked, with their defaults (services/gateway/
expansion.py runs them). What needs the dataset (a target below its size) is preflight's."""

from __future__ import annotations

from dataclasses import dataclass

from distill.v1 import gateway_pb2
from services.common.errors import InvalidArgument
from services.common.specs.fields import float_field, int_field
from services.common.specs.judge import JudgeKind, judge_kind

MAX_TARGET_PROMPTS = 100_000
DEFAULT_EXAMPLES_PER_CALL = 5
MAX_EXAMPLES_PER_CALL = 50
DEFAULT_JUDGE_MIN_SCORE = 5.0
DEFAULT_DUPLICATE_THRESHOLD = 0.7
DEFAULT_CONTAMINATION_NGRAM = 8
MAX_CONTAMINATION_NGRAM = 64
DEFAULT_MAX_ROUNDS = 4
MAX_ROUNDS = 20
MAX_INSTRUCTIONS_CHARS = 4000


@dataclass(frozen=True)
class ExpansionSpec:
    target_prompts: int  # 0: off
    examples_per_call: int
    instructions: str
    judge: JudgeKind | None  # None: no judge filter
    judge_min_score: float
    seed: int
    duplicate_threshold: float
    contamination_ngram: int
    max_rounds: int

    @property
    def enabled(self) -> bool:
        return self.target_prompts > 0


def expansion_spec(settings: gateway_pb2.ExpansionSettings,
                   field: str = "spec.expansion") -> ExpansionSpec:
    if not 0 <= settings.target_prompts <= MAX_TARGET_PROMPTS:
        raise InvalidArgument(f"{field}.target_prompts: must be in [0, {MAX_TARGET_PROMPTS}] "
                              f"(0: no expansion), got {settings.target_prompts}")
    if len(settings.instructions) > MAX_INSTRUCTIONS_CHARS:
        raise InvalidArgument(f"{field}.instructions: at most {MAX_INSTRUCTIONS_CHARS} "
                              f"characters, got {len(settings.instructions)}")
    return ExpansionSpec(
        target_prompts=settings.target_prompts,
        examples_per_call=int_field(settings, "examples_per_call", f"{field}.examples_per_call",
                                    DEFAULT_EXAMPLES_PER_CALL, low=1, high=MAX_EXAMPLES_PER_CALL),
        instructions=settings.instructions,
        judge=(judge_kind(settings.judge, f"{field}.judge")
               if settings.judge.WhichOneof("kind") else None),
        judge_min_score=float_field(settings, "judge_min_score", f"{field}.judge_min_score",
                                    DEFAULT_JUDGE_MIN_SCORE, low=0.0, high=10.0),
        seed=settings.seed,
        duplicate_threshold=float_field(
            settings, "duplicate_threshold", f"{field}.duplicate_threshold",
            DEFAULT_DUPLICATE_THRESHOLD, low=0.0, high=1.0, low_open=True),
        contamination_ngram=int_field(
            settings, "contamination_ngram", f"{field}.contamination_ngram",
            DEFAULT_CONTAMINATION_NGRAM, low=1, high=MAX_CONTAMINATION_NGRAM),
        max_rounds=int_field(settings, "max_rounds", f"{field}.max_rounds", DEFAULT_MAX_ROUNDS,
                             low=1, high=MAX_ROUNDS),
    )


def check_target(spec: ExpansionSpec, dataset_prompts: int,
                 field: str = "spec.expansion.target_prompts") -> None:
    """The target against the dataset: expansion only adds prompts."""
    if spec.enabled and spec.target_prompts < dataset_prompts:
        raise InvalidArgument(f"{field}: {spec.target_prompts} is below the dataset's size "
                              f"({dataset_prompts} prompts); expansion only adds prompts (0 "
                              "turns it off)")
