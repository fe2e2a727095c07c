from distill.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainRequest(_message.Message):
    __slots__ = ("job_id", "curated", "student_model", "lora", "bond", "training", "resume")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CURATED_FIELD_NUMBER: _ClassVar[int]
    STUDENT_MODEL_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    BOND_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    curated: _common_pb2.ArtifactRef
    student_model: str
    lora: _common_pb2.LoraSettings
    bond: _common_pb2.BondSettings
    training: _common_pb2.TrainingSettings
    resume: bool
    def __init__(self, job_id: _Optional[str] = ..., curated: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., student_model: _Optional[str] = ..., lora: _Optional[_Union[_common_pb2.LoraSettings, _Mapping]] = ..., bond: _Optional[_Union[_common_pb2.BondSettings, _Mapping]] = ..., training: _Optional[_Union[_common_pb2.TrainingSettings, _Mapping]] = ..., resume: _Optional[bool] = ...) -> None: ...

class TrainStarted(_message.Message):
    __slots__ = ("backend", "device", "total_parameters", "trainable_parameters", "total_steps", "resumed_from_step")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FROM_STEP_FIELD_NUMBER: _ClassVar[int]
    backend: str
    device: str
    total_parameters: int
    trainable_parameters: int
    total_steps: int
    resumed_from_step: int
    def __init__(self, backend: _Optional[str] = ..., device: _Optional[str] = ..., total_parameters: _Optional[int] = ..., trainable_parameters: _Optional[int] = ..., total_steps: _Optional[int] = ..., resumed_from_step: _Optional[int] = ...) -> None: ...

class TrainStep(_message.Message):
    __slots__ = ("step", "total_steps", "loss", "sft_loss", "preference_loss", "kl_loss", "learning_rate", "tokens_per_second", "eta_seconds", "epoch")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    SFT_LOSS_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_LOSS_FIELD_NUMBER: _ClassVar[int]
    KL_LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    loss: float
    sft_loss: float
    preference_loss: float
    kl_loss: float
    learning_rate: float
    tokens_per_second: float
    eta_seconds: float
    epoch: float
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., sft_loss: _Optional[float] = ..., preference_loss: _Optional[float] = ..., kl_loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., epoch: _Optional[float] = ...) -> None: ...

class TrainCheckpoint(_message.Message):
    __slots__ = ("step", "checkpoint")
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    step: int
    checkpoint: _common_pb2.ArtifactRef
    def __init__(self, step: _Optional[int] = ..., checkpoint: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...

class TrainFinished(_message.Message):
    __slots__ = ("adapter", "steps", "final_loss", "train_seconds", "tokens")
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FINAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    adapter: _common_pb2.ArtifactRef
    steps: int
    final_loss: float
    train_seconds: float
    tokens: int
    def __init__(self, adapter: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., steps: _Optional[int] = ..., final_loss: _Optional[float] = ..., train_seconds: _Optional[float] = ..., tokens: _Optional[int] = ...) -> None: ...

class TrainResponse(_message.Message):
    __slots__ = ("started", "step", "checkpoint", "finished")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    started: TrainStarted
    step: TrainStep
    checkpoint: TrainCheckpoint
    finished: TrainFinished
    def __init__(self, started: _Optional[_Union[TrainStarted, _Mapping]] = ..., step: _Optional[_Union[TrainStep, _Mapping]] = ..., checkpoint: _Optional[_Union[TrainCheckpoint, _Mapping]] = ..., finished: _Optional[_Union[TrainFinished, _Mapping]] = ...) -> None: ...

class GetTrainerStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTrainerStatusResponse(_message.Message):
    __slots__ = ("capacity", "active_job_ids", "device", "backends", "memory_gb")
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    capacity: int
    active_job_ids: _containers.RepeatedScalarFieldContainer[str]
    device: str
    backends: _containers.RepeatedScalarFieldContainer[str]
    memory_gb: float
    def __init__(self, capacity: _Optional[int] = ..., active_job_ids: _Optional[_Iterable[str]] = ..., device: _Optional[str] = ..., backends: _Optional[_Iterable[str]] = ..., memory_gb: _Optional[float] = ...) -> None: ...
