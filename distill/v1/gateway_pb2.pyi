import datetime

from distill.v1 import common_pb2 as _common_pb2
from distill.v1 import judge_pb2 as _judge_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_TYPE_UNSPECIFIED: _ClassVar[TaskType]
    TASK_TYPE_CLASSIFICATION: _ClassVar[TaskType]
    TASK_TYPE_JSON_EXTRACTION: _ClassVar[TaskType]
    TASK_TYPE_SHORT_GENERATION: _ClassVar[TaskType]
    TASK_TYPE_LONG_FORM: _ClassVar[TaskType]
    TASK_TYPE_REASONING: _ClassVar[TaskType]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_GENERATING: _ClassVar[JobState]
    JOB_STATE_JUDGING: _ClassVar[JobState]
    JOB_STATE_TRAINING: _ClassVar[JobState]
    JOB_STATE_EXPORTING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLING: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_EVALUATING: _ClassVar[JobState]
    JOB_STATE_EXPANDING: _ClassVar[JobState]

class JobEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_EVENT_KIND_UNSPECIFIED: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_STATE: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_PROGRESS: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_RETRY: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_WARNING: _ClassVar[JobEventKind]
    JOB_EVENT_KIND_ERROR: _ClassVar[JobEventKind]
TASK_TYPE_UNSPECIFIED: TaskType
TASK_TYPE_CLASSIFICATION: TaskType
TASK_TYPE_JSON_EXTRACTION: TaskType
TASK_TYPE_SHORT_GENERATION: TaskType
TASK_TYPE_LONG_FORM: TaskType
TASK_TYPE_REASONING: TaskType
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_GENERATING: JobState
JOB_STATE_JUDGING: JobState
JOB_STATE_TRAINING: JobState
JOB_STATE_EXPORTING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLING: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_EVALUATING: JobState
JOB_STATE_EXPANDING: JobState
JOB_EVENT_KIND_UNSPECIFIED: JobEventKind
JOB_EVENT_KIND_STATE: JobEventKind
JOB_EVENT_KIND_PROGRESS: JobEventKind
JOB_EVENT_KIND_RETRY: JobEventKind
JOB_EVENT_KIND_WARNING: JobEventKind
JOB_EVENT_KIND_ERROR: JobEventKind

class EvalSettings(_message.Message):
    __slots__ = ("held_out", "holdout_fraction", "promote_min_ratio", "seed", "promote_min_pass_rate")
    HELD_OUT_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_MIN_RATIO_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_MIN_PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    held_out: _common_pb2.ArtifactRef
    holdout_fraction: float
    promote_min_ratio: float
    seed: int
    promote_min_pass_rate: float
    def __init__(self, held_out: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., holdout_fraction: _Optional[float] = ..., promote_min_ratio: _Optional[float] = ..., seed: _Optional[int] = ..., promote_min_pass_rate: _Optional[float] = ...) -> None: ...

class DistillSpec(_message.Message):
    __slots__ = ("display_name", "dataset", "task_type", "teacher", "n_samples", "system_prompt", "limits", "judge", "student_model", "lora", "bond", "training", "export", "eval", "budget_usd", "promote_alias", "progressive", "committee", "expansion")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    STUDENT_MODEL_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    BOND_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    EVAL_FIELD_NUMBER: _ClassVar[int]
    BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_ALIAS_FIELD_NUMBER: _ClassVar[int]
    PROGRESSIVE_FIELD_NUMBER: _ClassVar[int]
    COMMITTEE_FIELD_NUMBER: _ClassVar[int]
    EXPANSION_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    dataset: _common_pb2.ArtifactRef
    task_type: TaskType
    teacher: _common_pb2.ModelSpec
    n_samples: int
    system_prompt: str
    limits: _common_pb2.RateLimits
    judge: _judge_pb2.JudgeConfig
    student_model: str
    lora: _common_pb2.LoraSettings
    bond: _common_pb2.BondSettings
    training: _common_pb2.TrainingSettings
    export: _common_pb2.ExportSettings
    eval: EvalSettings
    budget_usd: float
    promote_alias: str
    progressive: ProgressivePromotion
    committee: _containers.RepeatedCompositeFieldContainer[_common_pb2.CommitteeMember]
    expansion: ExpansionSettings
    def __init__(self, display_name: _Optional[str] = ..., dataset: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., task_type: _Optional[_Union[TaskType, str]] = ..., teacher: _Optional[_Union[_common_pb2.ModelSpec, _Mapping]] = ..., n_samples: _Optional[int] = ..., system_prompt: _Optional[str] = ..., limits: _Optional[_Union[_common_pb2.RateLimits, _Mapping]] = ..., judge: _Optional[_Union[_judge_pb2.JudgeConfig, _Mapping]] = ..., student_model: _Optional[str] = ..., lora: _Optional[_Union[_common_pb2.LoraSettings, _Mapping]] = ..., bond: _Optional[_Union[_common_pb2.BondSettings, _Mapping]] = ..., training: _Optional[_Union[_common_pb2.TrainingSettings, _Mapping]] = ..., export: _Optional[_Union[_common_pb2.ExportSettings, _Mapping]] = ..., eval: _Optional[_Union[EvalSettings, _Mapping]] = ..., budget_usd: _Optional[float] = ..., promote_alias: _Optional[str] = ..., progressive: _Optional[_Union[ProgressivePromotion, _Mapping]] = ..., committee: _Optional[_Iterable[_Union[_common_pb2.CommitteeMember, _Mapping]]] = ..., expansion: _Optional[_Union[ExpansionSettings, _Mapping]] = ...) -> None: ...

class ProgressivePromotion(_message.Message):
    __slots__ = ("enabled", "canary_percents", "skip_shadow", "window_requests", "min_ratio")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CANARY_PERCENTS_FIELD_NUMBER: _ClassVar[int]
    SKIP_SHADOW_FIELD_NUMBER: _ClassVar[int]
    WINDOW_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MIN_RATIO_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    canary_percents: _containers.RepeatedScalarFieldContainer[int]
    skip_shadow: bool
    window_requests: int
    min_ratio: float
    def __init__(self, enabled: _Optional[bool] = ..., canary_percents: _Optional[_Iterable[int]] = ..., skip_shadow: _Optional[bool] = ..., window_requests: _Optional[int] = ..., min_ratio: _Optional[float] = ...) -> None: ...

class ExpansionSettings(_message.Message):
    __slots__ = ("target_prompts", "examples_per_call", "instructions", "judge", "judge_min_score", "seed", "duplicate_threshold", "contamination_ngram", "max_rounds")
    TARGET_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    JUDGE_MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CONTAMINATION_NGRAM_FIELD_NUMBER: _ClassVar[int]
    MAX_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    target_prompts: int
    examples_per_call: int
    instructions: str
    judge: _common_pb2.JudgeSpec
    judge_min_score: float
    seed: int
    duplicate_threshold: float
    contamination_ngram: int
    max_rounds: int
    def __init__(self, target_prompts: _Optional[int] = ..., examples_per_call: _Optional[int] = ..., instructions: _Optional[str] = ..., judge: _Optional[_Union[_common_pb2.JudgeSpec, _Mapping]] = ..., judge_min_score: _Optional[float] = ..., seed: _Optional[int] = ..., duplicate_threshold: _Optional[float] = ..., contamination_ngram: _Optional[int] = ..., max_rounds: _Optional[int] = ...) -> None: ...

class ExpansionStatistics(_message.Message):
    __slots__ = ("seed_prompts", "target_prompts", "requested", "dropped_empty", "dropped_duplicates", "dropped_contaminated", "dropped_by_judge", "generated", "examples", "rounds")
    SEED_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_EMPTY_FIELD_NUMBER: _ClassVar[int]
    DROPPED_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_CONTAMINATED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BY_JUDGE_FIELD_NUMBER: _ClassVar[int]
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    seed_prompts: int
    target_prompts: int
    requested: int
    dropped_empty: int
    dropped_duplicates: int
    dropped_contaminated: int
    dropped_by_judge: int
    generated: int
    examples: _containers.RepeatedCompositeFieldContainer[ExpansionExample]
    rounds: int
    def __init__(self, seed_prompts: _Optional[int] = ..., target_prompts: _Optional[int] = ..., requested: _Optional[int] = ..., dropped_empty: _Optional[int] = ..., dropped_duplicates: _Optional[int] = ..., dropped_contaminated: _Optional[int] = ..., dropped_by_judge: _Optional[int] = ..., generated: _Optional[int] = ..., examples: _Optional[_Iterable[_Union[ExpansionExample, _Mapping]]] = ..., rounds: _Optional[int] = ...) -> None: ...

class ExpansionExample(_message.Message):
    __slots__ = ("prompt", "outcome", "detail")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    outcome: str
    detail: str
    def __init__(self, prompt: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class EstimateRequest(_message.Message):
    __slots__ = ("spec", "batch_api")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    BATCH_API_FIELD_NUMBER: _ClassVar[int]
    spec: DistillSpec
    batch_api: bool
    def __init__(self, spec: _Optional[_Union[DistillSpec, _Mapping]] = ..., batch_api: _Optional[bool] = ...) -> None: ...

class CostLine(_message.Message):
    __slots__ = ("item", "quantity", "unit", "usd_low", "usd_high")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    USD_LOW_FIELD_NUMBER: _ClassVar[int]
    USD_HIGH_FIELD_NUMBER: _ClassVar[int]
    item: str
    quantity: float
    unit: str
    usd_low: float
    usd_high: float
    def __init__(self, item: _Optional[str] = ..., quantity: _Optional[float] = ..., unit: _Optional[str] = ..., usd_low: _Optional[float] = ..., usd_high: _Optional[float] = ...) -> None: ...

class EstimateResponse(_message.Message):
    __slots__ = ("breakdown", "total_usd_low", "total_usd_high", "prompts", "teacher_input_tokens", "teacher_output_tokens", "judge_calls", "judge_tokens", "training_tokens", "gpu_hours_low", "gpu_hours_high", "peak_vram_gb", "assumptions", "warnings")
    BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_USD_LOW_FIELD_NUMBER: _ClassVar[int]
    TOTAL_USD_HIGH_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    TEACHER_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEACHER_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_CALLS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_LOW_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_HIGH_FIELD_NUMBER: _ClassVar[int]
    PEAK_VRAM_GB_FIELD_NUMBER: _ClassVar[int]
    ASSUMPTIONS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    breakdown: _containers.RepeatedCompositeFieldContainer[CostLine]
    total_usd_low: float
    total_usd_high: float
    prompts: int
    teacher_input_tokens: int
    teacher_output_tokens: int
    judge_calls: int
    judge_tokens: int
    training_tokens: int
    gpu_hours_low: float
    gpu_hours_high: float
    peak_vram_gb: float
    assumptions: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, breakdown: _Optional[_Iterable[_Union[CostLine, _Mapping]]] = ..., total_usd_low: _Optional[float] = ..., total_usd_high: _Optional[float] = ..., prompts: _Optional[int] = ..., teacher_input_tokens: _Optional[int] = ..., teacher_output_tokens: _Optional[int] = ..., judge_calls: _Optional[int] = ..., judge_tokens: _Optional[int] = ..., training_tokens: _Optional[int] = ..., gpu_hours_low: _Optional[float] = ..., gpu_hours_high: _Optional[float] = ..., peak_vram_gb: _Optional[float] = ..., assumptions: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class JobOutputs(_message.Message):
    __slots__ = ("dataset", "candidates", "curated", "checkpoint", "adapter", "export_manifest", "student_gguf", "report", "held_out", "train_dataset", "base_gguf", "evaluation", "expanded_dataset")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CURATED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    EXPORT_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    STUDENT_GGUF_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_FIELD_NUMBER: _ClassVar[int]
    TRAIN_DATASET_FIELD_NUMBER: _ClassVar[int]
    BASE_GGUF_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    EXPANDED_DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.ArtifactRef
    candidates: _common_pb2.ArtifactRef
    curated: _common_pb2.ArtifactRef
    checkpoint: _common_pb2.ArtifactRef
    adapter: _common_pb2.ArtifactRef
    export_manifest: _common_pb2.ArtifactRef
    student_gguf: _common_pb2.ArtifactRef
    report: _common_pb2.ArtifactRef
    held_out: _common_pb2.ArtifactRef
    train_dataset: _common_pb2.ArtifactRef
    base_gguf: _common_pb2.ArtifactRef
    evaluation: _common_pb2.ArtifactRef
    expanded_dataset: _common_pb2.ArtifactRef
    def __init__(self, dataset: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., candidates: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., curated: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., checkpoint: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., adapter: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., export_manifest: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., student_gguf: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., report: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., held_out: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., train_dataset: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., base_gguf: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., evaluation: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., expanded_dataset: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class ModelEvaluation(_message.Message):
    __slots__ = ("model", "mean_score", "pass_rate", "latency_seconds_mean", "cost_per_1k_requests_usd")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEAN_SCORE_FIELD_NUMBER: _ClassVar[int]
    PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_MEAN_FIELD_NUMBER: _ClassVar[int]
    COST_PER_1K_REQUESTS_USD_FIELD_NUMBER: _ClassVar[int]
    model: str
    mean_score: float
    pass_rate: float
    latency_seconds_mean: float
    cost_per_1k_requests_usd: float
    def __init__(self, model: _Optional[str] = ..., mean_score: _Optional[float] = ..., pass_rate: _Optional[float] = ..., latency_seconds_mean: _Optional[float] = ..., cost_per_1k_requests_usd: _Optional[float] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("prompts", "models", "student_wins", "student_ties", "student_losses", "student_win_rate", "promoted", "promotion_reason", "min_pass_rate")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    STUDENT_WINS_FIELD_NUMBER: _ClassVar[int]
    STUDENT_TIES_FIELD_NUMBER: _ClassVar[int]
    STUDENT_LOSSES_FIELD_NUMBER: _ClassVar[int]
    STUDENT_WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_REASON_FIELD_NUMBER: _ClassVar[int]
    MIN_PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    prompts: int
    models: _containers.RepeatedCompositeFieldContainer[ModelEvaluation]
    student_wins: int
    student_ties: int
    student_losses: int
    student_win_rate: float
    promoted: bool
    promotion_reason: str
    min_pass_rate: float
    def __init__(self, prompts: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelEvaluation, _Mapping]]] = ..., student_wins: _Optional[int] = ..., student_ties: _Optional[int] = ..., student_losses: _Optional[int] = ..., student_win_rate: _Optional[float] = ..., promoted: _Optional[bool] = ..., promotion_reason: _Optional[str] = ..., min_pass_rate: _Optional[float] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("code", "message", "stage")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    stage: JobState
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., stage: _Optional[_Union[JobState, str]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("name", "request_id", "spec", "state", "progress", "teacher_usage", "judge_usage", "cost_usd", "outputs", "judge_statistics", "evaluation", "error", "create_time", "update_time", "promoted_alias_version", "train_loss", "warnings", "project", "expansion")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TEACHER_USAGE_FIELD_NUMBER: _ClassVar[int]
    JUDGE_USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_STATISTICS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_ALIAS_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    EXPANSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    spec: DistillSpec
    state: JobState
    progress: _common_pb2.Progress
    teacher_usage: _common_pb2.Usage
    judge_usage: _common_pb2.Usage
    cost_usd: float
    outputs: JobOutputs
    judge_statistics: _judge_pb2.JudgeStatistics
    evaluation: Evaluation
    error: JobError
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    promoted_alias_version: int
    train_loss: float
    warnings: _containers.RepeatedScalarFieldContainer[str]
    project: str
    expansion: ExpansionStatistics
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ..., spec: _Optional[_Union[DistillSpec, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., teacher_usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., judge_usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., outputs: _Optional[_Union[JobOutputs, _Mapping]] = ..., judge_statistics: _Optional[_Union[_judge_pb2.JudgeStatistics, _Mapping]] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., promoted_alias_version: _Optional[int] = ..., train_loss: _Optional[float] = ..., warnings: _Optional[_Iterable[str]] = ..., project: _Optional[str] = ..., expansion: _Optional[_Union[ExpansionStatistics, _Mapping]] = ...) -> None: ...

class DistillRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: DistillSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[DistillSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DistillResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "states")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[JobState]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ("artifacts_deleted", "cache_entries_deleted")
    ARTIFACTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    CACHE_ENTRIES_DELETED_FIELD_NUMBER: _ClassVar[int]
    artifacts_deleted: int
    cache_entries_deleted: int
    def __init__(self, artifacts_deleted: _Optional[int] = ..., cache_entries_deleted: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("time", "kind", "state", "message")
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    kind: JobEventKind
    state: JobState
    message: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[JobEventKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., message: _Optional[str] = ...) -> None: ...

class ListJobEventsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[JobEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[JobEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetJobMetricsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class TrainingStep(_message.Message):
    __slots__ = ("step", "epoch", "loss", "sft_loss", "preference_loss", "kl_loss", "learning_rate", "tokens_per_second")
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    SFT_LOSS_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_LOSS_FIELD_NUMBER: _ClassVar[int]
    KL_LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    step: int
    epoch: float
    loss: float
    sft_loss: float
    preference_loss: float
    kl_loss: float
    learning_rate: float
    tokens_per_second: float
    def __init__(self, step: _Optional[int] = ..., epoch: _Optional[float] = ..., loss: _Optional[float] = ..., sft_loss: _Optional[float] = ..., preference_loss: _Optional[float] = ..., kl_loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., tokens_per_second: _Optional[float] = ...) -> None: ...

class GetJobMetricsResponse(_message.Message):
    __slots__ = ("training", "training_note", "evaluation")
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    TRAINING_NOTE_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    training: _containers.RepeatedCompositeFieldContainer[TrainingStep]
    training_note: str
    evaluation: Evaluation
    def __init__(self, training: _Optional[_Iterable[_Union[TrainingStep, _Mapping]]] = ..., training_note: _Optional[str] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ...) -> None: ...

class UploadMetadata(_message.Message):
    __slots__ = ("filename", "sha256")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    filename: str
    sha256: str
    def __init__(self, filename: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadDatasetRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: UploadMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[UploadMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadDatasetResponse(_message.Message):
    __slots__ = ("dataset", "deduplicated", "prompts")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.ArtifactRef
    deduplicated: bool
    prompts: int
    def __init__(self, dataset: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., deduplicated: _Optional[bool] = ..., prompts: _Optional[int] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("uri",)
    URI_FIELD_NUMBER: _ClassVar[int]
    uri: str
    def __init__(self, uri: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ("artifacts_deleted",)
    ARTIFACTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    artifacts_deleted: int
    def __init__(self, artifacts_deleted: _Optional[int] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("uri",)
    URI_FIELD_NUMBER: _ClassVar[int]
    uri: str
    def __init__(self, uri: _Optional[str] = ...) -> None: ...

class DownloadArtifactResponse(_message.Message):
    __slots__ = ("artifact", "chunk")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    artifact: _common_pb2.ArtifactRef
    chunk: bytes
    def __init__(self, artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class AliasTarget(_message.Message):
    __slots__ = ("job", "teacher", "upstream", "gguf", "description", "max_tokens_limit")
    JOB_FIELD_NUMBER: _ClassVar[int]
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    GGUF_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    job: str
    teacher: _common_pb2.ModelSpec
    upstream: Upstream
    gguf: _common_pb2.ArtifactRef
    description: str
    max_tokens_limit: int
    def __init__(self, job: _Optional[str] = ..., teacher: _Optional[_Union[_common_pb2.ModelSpec, _Mapping]] = ..., upstream: _Optional[_Union[Upstream, _Mapping]] = ..., gguf: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., description: _Optional[str] = ..., max_tokens_limit: _Optional[int] = ...) -> None: ...

class Upstream(_message.Message):
    __slots__ = ("base_url", "model", "api_key_env")
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ENV_FIELD_NUMBER: _ClassVar[int]
    base_url: str
    model: str
    api_key_env: str
    def __init__(self, base_url: _Optional[str] = ..., model: _Optional[str] = ..., api_key_env: _Optional[str] = ...) -> None: ...

class AliasVersion(_message.Message):
    __slots__ = ("version", "target", "routing", "create_time")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    version: int
    target: AliasTarget
    routing: AliasRouting
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[int] = ..., target: _Optional[_Union[AliasTarget, _Mapping]] = ..., routing: _Optional[_Union[AliasRouting, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Alias(_message.Message):
    __slots__ = ("name", "version", "target", "routing", "history", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    target: AliasTarget
    routing: AliasRouting
    history: _containers.RepeatedCompositeFieldContainer[AliasVersion]
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., target: _Optional[_Union[AliasTarget, _Mapping]] = ..., routing: _Optional[_Union[AliasRouting, _Mapping]] = ..., history: _Optional[_Iterable[_Union[AliasVersion, _Mapping]]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("name", "target", "routing", "expected_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: AliasTarget
    routing: AliasRouting
    expected_version: int
    def __init__(self, name: _Optional[str] = ..., target: _Optional[_Union[AliasTarget, _Mapping]] = ..., routing: _Optional[_Union[AliasRouting, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: Alias
    def __init__(self, alias: _Optional[_Union[Alias, _Mapping]] = ...) -> None: ...

class GetAliasRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetAliasResponse(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: Alias
    def __init__(self, alias: _Optional[_Union[Alias, _Mapping]] = ...) -> None: ...

class ListAliasesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAliasesResponse(_message.Message):
    __slots__ = ("aliases", "next_page_token")
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[Alias]
    next_page_token: str
    def __init__(self, aliases: _Optional[_Iterable[_Union[Alias, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RollbackAliasRequest(_message.Message):
    __slots__ = ("name", "to_version", "expected_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    to_version: int
    expected_version: int
    def __init__(self, name: _Optional[str] = ..., to_version: _Optional[int] = ..., expected_version: _Optional[int] = ...) -> None: ...

class RollbackAliasResponse(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: Alias
    def __init__(self, alias: _Optional[_Union[Alias, _Mapping]] = ...) -> None: ...

class ListTraceDaysRequest(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    def __init__(self, alias: _Optional[str] = ...) -> None: ...

class TraceDay(_message.Message):
    __slots__ = ("day", "segments", "size_bytes")
    DAY_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    day: str
    segments: int
    size_bytes: int
    def __init__(self, day: _Optional[str] = ..., segments: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ListTraceDaysResponse(_message.Message):
    __slots__ = ("days",)
    DAYS_FIELD_NUMBER: _ClassVar[int]
    days: _containers.RepeatedCompositeFieldContainer[TraceDay]
    def __init__(self, days: _Optional[_Iterable[_Union[TraceDay, _Mapping]]] = ...) -> None: ...

class CreateDatasetFromTracesRequest(_message.Message):
    __slots__ = ("alias", "start_time", "end_time", "targets", "fallbacks_only", "validator_failed_only", "tags", "keep_duplicates", "max_rows", "seed", "answers_as_reference")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_ONLY_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_FAILED_ONLY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    KEEP_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_AS_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    alias: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    targets: _containers.RepeatedScalarFieldContainer[str]
    fallbacks_only: bool
    validator_failed_only: bool
    tags: _containers.ScalarMap[str, str]
    keep_duplicates: bool
    max_rows: int
    seed: int
    answers_as_reference: bool
    def __init__(self, alias: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., targets: _Optional[_Iterable[str]] = ..., fallbacks_only: _Optional[bool] = ..., validator_failed_only: _Optional[bool] = ..., tags: _Optional[_Mapping[str, str]] = ..., keep_duplicates: _Optional[bool] = ..., max_rows: _Optional[int] = ..., seed: _Optional[int] = ..., answers_as_reference: _Optional[bool] = ...) -> None: ...

class CreateDatasetFromTracesResponse(_message.Message):
    __slots__ = ("dataset", "prompts", "deduplicated", "segments_read", "traces_scanned", "traces_matched", "duplicates_dropped")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_READ_FIELD_NUMBER: _ClassVar[int]
    TRACES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    TRACES_MATCHED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.ArtifactRef
    prompts: int
    deduplicated: bool
    segments_read: int
    traces_scanned: int
    traces_matched: int
    duplicates_dropped: int
    def __init__(self, dataset: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., prompts: _Optional[int] = ..., deduplicated: _Optional[bool] = ..., segments_read: _Optional[int] = ..., traces_scanned: _Optional[int] = ..., traces_matched: _Optional[int] = ..., duplicates_dropped: _Optional[int] = ...) -> None: ...

class BuildAliasReportRequest(_message.Message):
    __slots__ = ("name", "window_days")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    window_days: int
    def __init__(self, name: _Optional[str] = ..., window_days: _Optional[int] = ...) -> None: ...

class BuildAliasReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _common_pb2.ArtifactRef
    def __init__(self, report: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class AliasRouting(_message.Message):
    __slots__ = ("canary", "shadows", "validator", "capture", "judge")
    CANARY_FIELD_NUMBER: _ClassVar[int]
    SHADOWS_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    canary: _containers.RepeatedCompositeFieldContainer[WeightedTarget]
    shadows: _containers.RepeatedCompositeFieldContainer[AliasTarget]
    validator: AliasValidator
    capture: TraceCapture
    judge: LiveJudge
    def __init__(self, canary: _Optional[_Iterable[_Union[WeightedTarget, _Mapping]]] = ..., shadows: _Optional[_Iterable[_Union[AliasTarget, _Mapping]]] = ..., validator: _Optional[_Union[AliasValidator, _Mapping]] = ..., capture: _Optional[_Union[TraceCapture, _Mapping]] = ..., judge: _Optional[_Union[LiveJudge, _Mapping]] = ...) -> None: ...

class LiveJudge(_message.Message):
    __slots__ = ("judge", "sample_rate")
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    judge: _common_pb2.JudgeSpec
    sample_rate: float
    def __init__(self, judge: _Optional[_Union[_common_pb2.JudgeSpec, _Mapping]] = ..., sample_rate: _Optional[float] = ...) -> None: ...

class WeightedTarget(_message.Message):
    __slots__ = ("target", "percent")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    target: AliasTarget
    percent: int
    def __init__(self, target: _Optional[_Union[AliasTarget, _Mapping]] = ..., percent: _Optional[int] = ...) -> None: ...

class AliasValidator(_message.Message):
    __slots__ = ("judge", "labels", "max_latency_seconds", "fallback")
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    judge: _common_pb2.JudgeSpec
    labels: _containers.RepeatedScalarFieldContainer[str]
    max_latency_seconds: float
    fallback: _common_pb2.ModelSpec
    def __init__(self, judge: _Optional[_Union[_common_pb2.JudgeSpec, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ..., max_latency_seconds: _Optional[float] = ..., fallback: _Optional[_Union[_common_pb2.ModelSpec, _Mapping]] = ...) -> None: ...

class TraceCapture(_message.Message):
    __slots__ = ("disabled", "redact", "redact_patterns")
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    REDACT_FIELD_NUMBER: _ClassVar[int]
    REDACT_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    disabled: bool
    redact: _containers.RepeatedScalarFieldContainer[str]
    redact_patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, disabled: _Optional[bool] = ..., redact: _Optional[_Iterable[str]] = ..., redact_patterns: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchAliasesRequest(_message.Message):
    __slots__ = ("resume_after",)
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    resume_after: int
    def __init__(self, resume_after: _Optional[int] = ...) -> None: ...

class AliasState(_message.Message):
    __slots__ = ("name", "version", "target", "update_time", "project", "routing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    target: AliasTarget
    update_time: _timestamp_pb2.Timestamp
    project: str
    routing: AliasRouting
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., target: _Optional[_Union[AliasTarget, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., project: _Optional[str] = ..., routing: _Optional[_Union[AliasRouting, _Mapping]] = ...) -> None: ...

class AliasSnapshot(_message.Message):
    __slots__ = ("aliases",)
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[AliasState]
    def __init__(self, aliases: _Optional[_Iterable[_Union[AliasState, _Mapping]]] = ...) -> None: ...

class WatchAliasesResponse(_message.Message):
    __slots__ = ("sequence", "snapshot", "change")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    snapshot: AliasSnapshot
    change: AliasState
    def __init__(self, sequence: _Optional[int] = ..., snapshot: _Optional[_Union[AliasSnapshot, _Mapping]] = ..., change: _Optional[_Union[AliasState, _Mapping]] = ...) -> None: ...
