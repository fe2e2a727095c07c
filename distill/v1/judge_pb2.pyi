from distill.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_CHOSEN: _ClassVar[Verdict]
    VERDICT_REJECTED: _ClassVar[Verdict]
    VERDICT_JUDGE_ERROR: _ClassVar[Verdict]
VERDICT_UNSPECIFIED: Verdict
VERDICT_CHOSEN: Verdict
VERDICT_REJECTED: Verdict
VERDICT_JUDGE_ERROR: Verdict

class JudgeConfig(_message.Message):
    __slots__ = ("judge", "top_k", "min_score", "min_margin", "job_id", "project", "run_id")
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MIN_MARGIN_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    judge: _common_pb2.JudgeSpec
    top_k: int
    min_score: float
    min_margin: float
    job_id: str
    project: str
    run_id: str
    def __init__(self, judge: _Optional[_Union[_common_pb2.JudgeSpec, _Mapping]] = ..., top_k: _Optional[int] = ..., min_score: _Optional[float] = ..., min_margin: _Optional[float] = ..., job_id: _Optional[str] = ..., project: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class JudgeRequest(_message.Message):
    __slots__ = ("config", "group")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    config: JudgeConfig
    group: _common_pb2.CandidateGroup
    def __init__(self, config: _Optional[_Union[JudgeConfig, _Mapping]] = ..., group: _Optional[_Union[_common_pb2.CandidateGroup, _Mapping]] = ...) -> None: ...

class CriterionScore(_message.Message):
    __slots__ = ("name", "score")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    score: float
    def __init__(self, name: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class ScoredCandidate(_message.Message):
    __slots__ = ("sample_index", "score", "criteria", "rationale", "verdict", "judge_error")
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    JUDGE_ERROR_FIELD_NUMBER: _ClassVar[int]
    sample_index: int
    score: float
    criteria: _containers.RepeatedCompositeFieldContainer[CriterionScore]
    rationale: str
    verdict: Verdict
    judge_error: str
    def __init__(self, sample_index: _Optional[int] = ..., score: _Optional[float] = ..., criteria: _Optional[_Iterable[_Union[CriterionScore, _Mapping]]] = ..., rationale: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., judge_error: _Optional[str] = ...) -> None: ...

class JudgedGroup(_message.Message):
    __slots__ = ("prompt_id", "candidates", "dropped", "drop_reason", "usage", "cached_calls")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    DROP_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CACHED_CALLS_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    candidates: _containers.RepeatedCompositeFieldContainer[ScoredCandidate]
    dropped: bool
    drop_reason: str
    usage: _common_pb2.Usage
    cached_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.PaidCall]
    def __init__(self, prompt_id: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[ScoredCandidate, _Mapping]]] = ..., dropped: _Optional[bool] = ..., drop_reason: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cached_calls: _Optional[_Iterable[_Union[_common_pb2.PaidCall, _Mapping]]] = ...) -> None: ...

class JudgeStatistics(_message.Message):
    __slots__ = ("score_histogram", "prompts_total", "prompts_kept", "prompts_dropped", "candidates_scored", "judge_errors", "preference_pairs", "usage")
    SCORE_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_SCORED_FIELD_NUMBER: _ClassVar[int]
    JUDGE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_PAIRS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    score_histogram: _containers.RepeatedScalarFieldContainer[int]
    prompts_total: int
    prompts_kept: int
    prompts_dropped: int
    candidates_scored: int
    judge_errors: int
    preference_pairs: int
    usage: _common_pb2.Usage
    def __init__(self, score_histogram: _Optional[_Iterable[int]] = ..., prompts_total: _Optional[int] = ..., prompts_kept: _Optional[int] = ..., prompts_dropped: _Optional[int] = ..., candidates_scored: _Optional[int] = ..., judge_errors: _Optional[int] = ..., preference_pairs: _Optional[int] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class JudgeSummary(_message.Message):
    __slots__ = ("curated", "statistics")
    CURATED_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    curated: _common_pb2.ArtifactRef
    statistics: JudgeStatistics
    def __init__(self, curated: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., statistics: _Optional[_Union[JudgeStatistics, _Mapping]] = ...) -> None: ...

class JudgeResponse(_message.Message):
    __slots__ = ("group", "summary")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    group: JudgedGroup
    summary: JudgeSummary
    def __init__(self, group: _Optional[_Union[JudgedGroup, _Mapping]] = ..., summary: _Optional[_Union[JudgeSummary, _Mapping]] = ...) -> None: ...
