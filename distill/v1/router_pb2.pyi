from distill.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TargetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_KIND_UNSPECIFIED: _ClassVar[TargetKind]
    TARGET_KIND_STUDENT: _ClassVar[TargetKind]
    TARGET_KIND_TEACHER: _ClassVar[TargetKind]
    TARGET_KIND_UPSTREAM: _ClassVar[TargetKind]
TARGET_KIND_UNSPECIFIED: TargetKind
TARGET_KIND_STUDENT: TargetKind
TARGET_KIND_TEACHER: TargetKind
TARGET_KIND_UPSTREAM: TargetKind

class Sampling(_message.Message):
    __slots__ = ("temperature", "max_tokens", "top_p", "stop", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    max_tokens: int
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ...) -> None: ...

class ChatRequest(_message.Message):
    __slots__ = ("model", "messages", "sampling", "tags", "user", "no_trace")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    NO_TRACE_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    sampling: Sampling
    tags: _containers.ScalarMap[str, str]
    user: str
    no_trace: bool
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., sampling: _Optional[_Union[Sampling, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., user: _Optional[str] = ..., no_trace: _Optional[bool] = ...) -> None: ...

class ChatStreamRequest(_message.Message):
    __slots__ = ("model", "messages", "sampling", "tags", "user", "no_trace")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    NO_TRACE_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    sampling: Sampling
    tags: _containers.ScalarMap[str, str]
    user: str
    no_trace: bool
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., sampling: _Optional[_Union[Sampling, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., user: _Optional[str] = ..., no_trace: _Optional[bool] = ...) -> None: ...

class ServedBy(_message.Message):
    __slots__ = ("alias", "version", "kind", "model")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    alias: str
    version: int
    kind: TargetKind
    model: str
    def __init__(self, alias: _Optional[str] = ..., version: _Optional[int] = ..., kind: _Optional[_Union[TargetKind, str]] = ..., model: _Optional[str] = ...) -> None: ...

class ChatUsage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "cost_usd", "latency_seconds")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_seconds: float
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ..., latency_seconds: _Optional[float] = ...) -> None: ...

class ChatResponse(_message.Message):
    __slots__ = ("content", "finish_reason", "served_by", "usage")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    content: str
    finish_reason: str
    served_by: ServedBy
    usage: ChatUsage
    def __init__(self, content: _Optional[str] = ..., finish_reason: _Optional[str] = ..., served_by: _Optional[_Union[ServedBy, _Mapping]] = ..., usage: _Optional[_Union[ChatUsage, _Mapping]] = ...) -> None: ...

class ChatStreamResponse(_message.Message):
    __slots__ = ("delta", "finish_reason", "served_by", "usage")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    delta: str
    finish_reason: str
    served_by: ServedBy
    usage: ChatUsage
    def __init__(self, delta: _Optional[str] = ..., finish_reason: _Optional[str] = ..., served_by: _Optional[_Union[ServedBy, _Mapping]] = ..., usage: _Optional[_Union[ChatUsage, _Mapping]] = ...) -> None: ...
