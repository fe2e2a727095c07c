"""gRPC servicer of the trainer service: thin, the logic lives in plain modules beside it."""

from __future__ import annotations

from collections.abc import Sequence

from distill.v1 import trainer_pb2, trainer_pb2_grpc
from services.common.server import Service
from services.trainer.settings import TrainerSettings


class TrainerService(trainer_pb2_grpc.TrainerServiceServicer):
    """Every RPC answers UNIMPLEMENTED until issue 5 lands (inherited from the base class)."""


def build(settings: TrainerSettings) -> Sequence[Service]:
    return [Service.of(trainer_pb2, trainer_pb2_grpc, TrainerService())]
