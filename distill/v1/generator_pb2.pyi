from distill.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InlinePrompts(_message.Message):
    __slots__ = ("prompts",)
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Prompt]
    def __init__(self, prompts: _Optional[_Iterable[_Union[_common_pb2.Prompt, _Mapping]]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("dataset", "prompts", "teacher", "n_samples", "system_prompt", "limits", "job_id", "project", "committee", "run_id")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    COMMITTEE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.ArtifactRef
    prompts: InlinePrompts
    teacher: _common_pb2.ModelSpec
    n_samples: int
    system_prompt: str
    limits: _common_pb2.RateLimits
    job_id: str
    project: str
    committee: _containers.RepeatedCompositeFieldContainer[_common_pb2.CommitteeMember]
    run_id: str
    def __init__(self, dataset: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., prompts: _Optional[_Union[InlinePrompts, _Mapping]] = ..., teacher: _Optional[_Union[_common_pb2.ModelSpec, _Mapping]] = ..., n_samples: _Optional[int] = ..., system_prompt: _Optional[str] = ..., limits: _Optional[_Union[_common_pb2.RateLimits, _Mapping]] = ..., job_id: _Optional[str] = ..., project: _Optional[str] = ..., committee: _Optional[_Iterable[_Union[_common_pb2.CommitteeMember, _Mapping]]] = ..., run_id: _Optional[str] = ...) -> None: ...

class GenerateProgress(_message.Message):
    __slots__ = ("prompts_done", "prompts_total", "usage", "retries", "rate_limited")
    PROMPTS_DONE_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITED_FIELD_NUMBER: _ClassVar[int]
    prompts_done: int
    prompts_total: int
    usage: _common_pb2.Usage
    retries: int
    rate_limited: int
    def __init__(self, prompts_done: _Optional[int] = ..., prompts_total: _Optional[int] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., retries: _Optional[int] = ..., rate_limited: _Optional[int] = ...) -> None: ...

class GenerateSummary(_message.Message):
    __slots__ = ("candidates", "usage", "prompts", "candidate_count")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    candidates: _common_pb2.ArtifactRef
    usage: _common_pb2.Usage
    prompts: int
    candidate_count: int
    def __init__(self, candidates: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., prompts: _Optional[int] = ..., candidate_count: _Optional[int] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("progress", "group", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: GenerateProgress
    group: _common_pb2.CandidateGroup
    summary: GenerateSummary
    def __init__(self, progress: _Optional[_Union[GenerateProgress, _Mapping]] = ..., group: _Optional[_Union[_common_pb2.CandidateGroup, _Mapping]] = ..., summary: _Optional[_Union[GenerateSummary, _Mapping]] = ...) -> None: ...
