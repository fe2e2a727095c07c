"""gRPC servicer of the exporter service: thin, the logic lives in plain modules beside it."""

from __future__ import annotations

from collections.abc import Sequence

from distill.v1 import exporter_pb2, exporter_pb2_grpc
from services.common.server import Service
from services.exporter.settings import ExporterSettings


class ExporterService(exporter_pb2_grpc.ExporterServiceServicer):
    """Every RPC answers UNIMPLEMENTED until issue 6 lands (inherited from the base class)."""


def build(settings: ExporterSettings) -> Sequence[Service]:
    return [Service.of(exporter_pb2, exporter_pb2_grpc, ExporterService())]
