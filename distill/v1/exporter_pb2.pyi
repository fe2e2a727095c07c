from distill.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_STAGE_UNSPECIFIED: _ClassVar[ExportStage]
    EXPORT_STAGE_ADAPTER: _ClassVar[ExportStage]
    EXPORT_STAGE_MERGE: _ClassVar[ExportStage]
    EXPORT_STAGE_CONVERT: _ClassVar[ExportStage]
    EXPORT_STAGE_QUANTIZE: _ClassVar[ExportStage]
    EXPORT_STAGE_LORA_GGUF: _ClassVar[ExportStage]
    EXPORT_STAGE_MODELFILE: _ClassVar[ExportStage]
    EXPORT_STAGE_SMOKE_TEST: _ClassVar[ExportStage]

class ExportOutput(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_OUTPUT_UNSPECIFIED: _ClassVar[ExportOutput]
    EXPORT_OUTPUT_ADAPTER: _ClassVar[ExportOutput]
    EXPORT_OUTPUT_MERGED_MODEL: _ClassVar[ExportOutput]
    EXPORT_OUTPUT_GGUF: _ClassVar[ExportOutput]
    EXPORT_OUTPUT_LORA_GGUF: _ClassVar[ExportOutput]
    EXPORT_OUTPUT_MODELFILE: _ClassVar[ExportOutput]
    EXPORT_OUTPUT_BASE_GGUF: _ClassVar[ExportOutput]
EXPORT_STAGE_UNSPECIFIED: ExportStage
EXPORT_STAGE_ADAPTER: ExportStage
EXPORT_STAGE_MERGE: ExportStage
EXPORT_STAGE_CONVERT: ExportStage
EXPORT_STAGE_QUANTIZE: ExportStage
EXPORT_STAGE_LORA_GGUF: ExportStage
EXPORT_STAGE_MODELFILE: ExportStage
EXPORT_STAGE_SMOKE_TEST: ExportStage
EXPORT_OUTPUT_UNSPECIFIED: ExportOutput
EXPORT_OUTPUT_ADAPTER: ExportOutput
EXPORT_OUTPUT_MERGED_MODEL: ExportOutput
EXPORT_OUTPUT_GGUF: ExportOutput
EXPORT_OUTPUT_LORA_GGUF: ExportOutput
EXPORT_OUTPUT_MODELFILE: ExportOutput
EXPORT_OUTPUT_BASE_GGUF: ExportOutput

class ExportRequest(_message.Message):
    __slots__ = ("job_id", "adapter", "base_model", "settings", "smoke_prompts", "include_base")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SMOKE_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_BASE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    adapter: _common_pb2.ArtifactRef
    base_model: str
    settings: _common_pb2.ExportSettings
    smoke_prompts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Prompt]
    include_base: bool
    def __init__(self, job_id: _Optional[str] = ..., adapter: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., base_model: _Optional[str] = ..., settings: _Optional[_Union[_common_pb2.ExportSettings, _Mapping]] = ..., smoke_prompts: _Optional[_Iterable[_Union[_common_pb2.Prompt, _Mapping]]] = ..., include_base: _Optional[bool] = ...) -> None: ...

class ExportProgress(_message.Message):
    __slots__ = ("stage", "detail", "progress")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    stage: ExportStage
    detail: str
    progress: _common_pb2.Progress
    def __init__(self, stage: _Optional[_Union[ExportStage, str]] = ..., detail: _Optional[str] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ...) -> None: ...

class SmokeTest(_message.Message):
    __slots__ = ("passed", "prompt", "answer", "tokens", "stopped_at_eos", "failure")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOPPED_AT_EOS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    prompt: str
    answer: str
    tokens: int
    stopped_at_eos: bool
    failure: str
    def __init__(self, passed: _Optional[bool] = ..., prompt: _Optional[str] = ..., answer: _Optional[str] = ..., tokens: _Optional[int] = ..., stopped_at_eos: _Optional[bool] = ..., failure: _Optional[str] = ...) -> None: ...

class ExportedFile(_message.Message):
    __slots__ = ("output", "quantization", "artifact", "smoke_test")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    SMOKE_TEST_FIELD_NUMBER: _ClassVar[int]
    output: ExportOutput
    quantization: _common_pb2.QuantizationType
    artifact: _common_pb2.ArtifactRef
    smoke_test: SmokeTest
    def __init__(self, output: _Optional[_Union[ExportOutput, str]] = ..., quantization: _Optional[_Union[_common_pb2.QuantizationType, str]] = ..., artifact: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., smoke_test: _Optional[_Union[SmokeTest, _Mapping]] = ...) -> None: ...

class ExportManifest(_message.Message):
    __slots__ = ("files", "complete", "failed_stage", "failure", "manifest")
    FILES_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    FAILED_STAGE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[ExportedFile]
    complete: bool
    failed_stage: ExportStage
    failure: str
    manifest: _common_pb2.ArtifactRef
    def __init__(self, files: _Optional[_Iterable[_Union[ExportedFile, _Mapping]]] = ..., complete: _Optional[bool] = ..., failed_stage: _Optional[_Union[ExportStage, str]] = ..., failure: _Optional[str] = ..., manifest: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("progress", "manifest")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    progress: ExportProgress
    manifest: ExportManifest
    def __init__(self, progress: _Optional[_Union[ExportProgress, _Mapping]] = ..., manifest: _Optional[_Union[ExportManifest, _Mapping]] = ...) -> None: ...
