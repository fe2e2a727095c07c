from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_SYSTEM: _ClassVar[Role]
    ROLE_USER: _ClassVar[Role]
    ROLE_ASSISTANT: _ClassVar[Role]

class Provider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVIDER_UNSPECIFIED: _ClassVar[Provider]
    PROVIDER_OPENAI: _ClassVar[Provider]
    PROVIDER_ANTHROPIC: _ClassVar[Provider]
    PROVIDER_LOCAL: _ClassVar[Provider]

class MatchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_MODE_UNSPECIFIED: _ClassVar[MatchMode]
    MATCH_MODE_EXACT: _ClassVar[MatchMode]
    MATCH_MODE_NORMALIZED: _ClassVar[MatchMode]
    MATCH_MODE_LABEL: _ClassVar[MatchMode]

class TrainerBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINER_BACKEND_UNSPECIFIED: _ClassVar[TrainerBackend]
    TRAINER_BACKEND_AUTO: _ClassVar[TrainerBackend]
    TRAINER_BACKEND_TRL: _ClassVar[TrainerBackend]
    TRAINER_BACKEND_UNSLOTH: _ClassVar[TrainerBackend]

class QuantizationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUANTIZATION_TYPE_UNSPECIFIED: _ClassVar[QuantizationType]
    QUANTIZATION_TYPE_F16: _ClassVar[QuantizationType]
    QUANTIZATION_TYPE_Q8_0: _ClassVar[QuantizationType]
    QUANTIZATION_TYPE_Q6_K: _ClassVar[QuantizationType]
    QUANTIZATION_TYPE_Q5_K_M: _ClassVar[QuantizationType]
    QUANTIZATION_TYPE_Q4_K_M: _ClassVar[QuantizationType]
    QUANTIZATION_TYPE_Q4_0: _ClassVar[QuantizationType]
ROLE_UNSPECIFIED: Role
ROLE_SYSTEM: Role
ROLE_USER: Role
ROLE_ASSISTANT: Role
PROVIDER_UNSPECIFIED: Provider
PROVIDER_OPENAI: Provider
PROVIDER_ANTHROPIC: Provider
PROVIDER_LOCAL: Provider
MATCH_MODE_UNSPECIFIED: MatchMode
MATCH_MODE_EXACT: MatchMode
MATCH_MODE_NORMALIZED: MatchMode
MATCH_MODE_LABEL: MatchMode
TRAINER_BACKEND_UNSPECIFIED: TrainerBackend
TRAINER_BACKEND_AUTO: TrainerBackend
TRAINER_BACKEND_TRL: TrainerBackend
TRAINER_BACKEND_UNSLOTH: TrainerBackend
QUANTIZATION_TYPE_UNSPECIFIED: QuantizationType
QUANTIZATION_TYPE_F16: QuantizationType
QUANTIZATION_TYPE_Q8_0: QuantizationType
QUANTIZATION_TYPE_Q6_K: QuantizationType
QUANTIZATION_TYPE_Q5_K_M: QuantizationType
QUANTIZATION_TYPE_Q4_K_M: QuantizationType
QUANTIZATION_TYPE_Q4_0: QuantizationType

class ArtifactRef(_message.Message):
    __slots__ = ("uri", "sha256", "size_bytes", "media_type")
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    sha256: str
    size_bytes: int
    media_type: str
    def __init__(self, uri: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., media_type: _Optional[str] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: Role
    content: str
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., content: _Optional[str] = ...) -> None: ...

class Prompt(_message.Message):
    __slots__ = ("id", "messages", "reference", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    reference: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("requests", "cached_requests", "input_tokens", "output_tokens", "cost_usd")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CACHED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    requests: int
    cached_requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    def __init__(self, requests: _Optional[int] = ..., cached_requests: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("prompt_id", "sample_index", "text", "finish_reason", "usage", "cached", "latency_seconds", "original_cost_usd", "teacher", "paid")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_COST_USD_FIELD_NUMBER: _ClassVar[int]
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    sample_index: int
    text: str
    finish_reason: str
    usage: Usage
    cached: bool
    latency_seconds: float
    original_cost_usd: float
    teacher: str
    paid: PaidCall
    def __init__(self, prompt_id: _Optional[str] = ..., sample_index: _Optional[int] = ..., text: _Optional[str] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., cached: _Optional[bool] = ..., latency_seconds: _Optional[float] = ..., original_cost_usd: _Optional[float] = ..., teacher: _Optional[str] = ..., paid: _Optional[_Union[PaidCall, _Mapping]] = ...) -> None: ...

class PaidCall(_message.Message):
    __slots__ = ("run_id", "prompt_id", "usage", "call")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    prompt_id: str
    usage: Usage
    call: str
    def __init__(self, run_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., call: _Optional[str] = ...) -> None: ...

class CandidateGroup(_message.Message):
    __slots__ = ("prompt", "candidates")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("provider", "model", "base_url", "api_key_env", "temperature", "max_tokens", "top_p", "timeout_seconds", "input_usd_per_mtok", "output_usd_per_mtok", "endpoint")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ENV_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    provider: Provider
    model: str
    base_url: str
    api_key_env: str
    temperature: float
    max_tokens: int
    top_p: float
    timeout_seconds: float
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    endpoint: str
    def __init__(self, provider: _Optional[_Union[Provider, str]] = ..., model: _Optional[str] = ..., base_url: _Optional[str] = ..., api_key_env: _Optional[str] = ..., temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., top_p: _Optional[float] = ..., timeout_seconds: _Optional[float] = ..., input_usd_per_mtok: _Optional[float] = ..., output_usd_per_mtok: _Optional[float] = ..., endpoint: _Optional[str] = ...) -> None: ...

class CommitteeMember(_message.Message):
    __slots__ = ("teacher", "n_samples")
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    teacher: ModelSpec
    n_samples: int
    def __init__(self, teacher: _Optional[_Union[ModelSpec, _Mapping]] = ..., n_samples: _Optional[int] = ...) -> None: ...

class RateLimits(_message.Message):
    __slots__ = ("max_concurrency", "requests_per_minute", "tokens_per_minute", "max_retries")
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    max_concurrency: int
    requests_per_minute: int
    tokens_per_minute: int
    max_retries: int
    def __init__(self, max_concurrency: _Optional[int] = ..., requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ..., max_retries: _Optional[int] = ...) -> None: ...

class Criterion(_message.Message):
    __slots__ = ("name", "description", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class LlmJudge(_message.Message):
    __slots__ = ("model", "criteria", "rubric_text", "max_parse_retries")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    RUBRIC_TEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_PARSE_RETRIES_FIELD_NUMBER: _ClassVar[int]
    model: ModelSpec
    criteria: _containers.RepeatedCompositeFieldContainer[Criterion]
    rubric_text: str
    max_parse_retries: int
    def __init__(self, model: _Optional[_Union[ModelSpec, _Mapping]] = ..., criteria: _Optional[_Iterable[_Union[Criterion, _Mapping]]] = ..., rubric_text: _Optional[str] = ..., max_parse_retries: _Optional[int] = ...) -> None: ...

class ReferenceJudge(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: MatchMode
    def __init__(self, mode: _Optional[_Union[MatchMode, str]] = ...) -> None: ...

class RegexJudge(_message.Message):
    __slots__ = ("pattern", "full_match")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    FULL_MATCH_FIELD_NUMBER: _ClassVar[int]
    pattern: str
    full_match: bool
    def __init__(self, pattern: _Optional[str] = ..., full_match: _Optional[bool] = ...) -> None: ...

class JsonSchemaJudge(_message.Message):
    __slots__ = ("schema_json",)
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    schema_json: str
    def __init__(self, schema_json: _Optional[str] = ...) -> None: ...

class LengthJudge(_message.Message):
    __slots__ = ("min_chars", "max_chars")
    MIN_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_FIELD_NUMBER: _ClassVar[int]
    min_chars: int
    max_chars: int
    def __init__(self, min_chars: _Optional[int] = ..., max_chars: _Optional[int] = ...) -> None: ...

class WeightedJudge(_message.Message):
    __slots__ = ("judge", "weight", "gate", "gate_min_score")
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    GATE_MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    judge: JudgeSpec
    weight: float
    gate: bool
    gate_min_score: float
    def __init__(self, judge: _Optional[_Union[JudgeSpec, _Mapping]] = ..., weight: _Optional[float] = ..., gate: _Optional[bool] = ..., gate_min_score: _Optional[float] = ...) -> None: ...

class CompositeJudge(_message.Message):
    __slots__ = ("components",)
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    components: _containers.RepeatedCompositeFieldContainer[WeightedJudge]
    def __init__(self, components: _Optional[_Iterable[_Union[WeightedJudge, _Mapping]]] = ...) -> None: ...

class JudgeSpec(_message.Message):
    __slots__ = ("llm", "reference", "regex", "json_schema", "length", "composite")
    LLM_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    COMPOSITE_FIELD_NUMBER: _ClassVar[int]
    llm: LlmJudge
    reference: ReferenceJudge
    regex: RegexJudge
    json_schema: JsonSchemaJudge
    length: LengthJudge
    composite: CompositeJudge
    def __init__(self, llm: _Optional[_Union[LlmJudge, _Mapping]] = ..., reference: _Optional[_Union[ReferenceJudge, _Mapping]] = ..., regex: _Optional[_Union[RegexJudge, _Mapping]] = ..., json_schema: _Optional[_Union[JsonSchemaJudge, _Mapping]] = ..., length: _Optional[_Union[LengthJudge, _Mapping]] = ..., composite: _Optional[_Union[CompositeJudge, _Mapping]] = ...) -> None: ...

class LoraSettings(_message.Message):
    __slots__ = ("r", "alpha", "dropout", "target_modules")
    R_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    r: int
    alpha: int
    dropout: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, r: _Optional[int] = ..., alpha: _Optional[int] = ..., dropout: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ...) -> None: ...

class BondSettings(_message.Message):
    __slots__ = ("bond_beta", "bond_gamma", "preference_temperature")
    BOND_BETA_FIELD_NUMBER: _ClassVar[int]
    BOND_GAMMA_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    bond_beta: float
    bond_gamma: float
    preference_temperature: float
    def __init__(self, bond_beta: _Optional[float] = ..., bond_gamma: _Optional[float] = ..., preference_temperature: _Optional[float] = ...) -> None: ...

class TrainingSettings(_message.Message):
    __slots__ = ("max_steps", "epochs", "learning_rate", "batch_size", "gradient_accumulation_steps", "max_seq_length", "seed", "checkpoint_interval", "backend", "warmup_ratio")
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RATIO_FIELD_NUMBER: _ClassVar[int]
    max_steps: int
    epochs: float
    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    seed: int
    checkpoint_interval: int
    backend: TrainerBackend
    warmup_ratio: float
    def __init__(self, max_steps: _Optional[int] = ..., epochs: _Optional[float] = ..., learning_rate: _Optional[float] = ..., batch_size: _Optional[int] = ..., gradient_accumulation_steps: _Optional[int] = ..., max_seq_length: _Optional[int] = ..., seed: _Optional[int] = ..., checkpoint_interval: _Optional[int] = ..., backend: _Optional[_Union[TrainerBackend, str]] = ..., warmup_ratio: _Optional[float] = ...) -> None: ...

class ExportSettings(_message.Message):
    __slots__ = ("quantizations", "merged_model", "lora_gguf", "ollama_modelfile", "smoke_max_tokens")
    QUANTIZATIONS_FIELD_NUMBER: _ClassVar[int]
    MERGED_MODEL_FIELD_NUMBER: _ClassVar[int]
    LORA_GGUF_FIELD_NUMBER: _ClassVar[int]
    OLLAMA_MODELFILE_FIELD_NUMBER: _ClassVar[int]
    SMOKE_MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    quantizations: _containers.RepeatedScalarFieldContainer[QuantizationType]
    merged_model: bool
    lora_gguf: bool
    ollama_modelfile: bool
    smoke_max_tokens: int
    def __init__(self, quantizations: _Optional[_Iterable[_Union[QuantizationType, str]]] = ..., merged_model: _Optional[bool] = ..., lora_gguf: _Optional[bool] = ..., ollama_modelfile: _Optional[bool] = ..., smoke_max_tokens: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("done", "total", "unit", "eta_seconds", "message")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    unit: str
    eta_seconds: float
    message: str
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ..., unit: _Optional[str] = ..., eta_seconds: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...
