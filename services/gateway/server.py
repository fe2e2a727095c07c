"""gRPC servicer of the gateway service: thin, the logic lives in plain modules beside it."""

from __future__ import annotations

from collections.abc import Sequence

from distill.v1 import gateway_pb2, gateway_pb2_grpc
from services.common.server import Service
from services.gateway.settings import GatewaySettings


class GatewayService(gateway_pb2_grpc.GatewayServiceServicer):
    """Every RPC answers UNIMPLEMENTED until issue 7 lands (inherited from the base class)."""


def build(settings: GatewaySettings) -> Sequence[Service]:
    return [Service.of(gateway_pb2, gateway_pb2_grpc, GatewayService())]
