"""gRPC servicer of the generator service: thin, the logic lives in plain modules beside it."""

from __future__ import annotations

from collections.abc import Sequence

from distill.v1 import generator_pb2, generator_pb2_grpc
from services.common.server import Service
from services.generator.settings import GeneratorSettings


class GeneratorService(generator_pb2_grpc.GeneratorServiceServicer):
    """Every RPC answers UNIMPLEMENTED until issue 3 lands (inherited from the base class)."""


def build(settings: GeneratorSettings) -> Sequence[Service]:
    return [Service.of(generator_pb2, generator_pb2_grpc, GeneratorService())]
