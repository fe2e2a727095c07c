"""gRPC servicer of the judge service: thin, the logic lives in plain modules beside it."""

from __future__ import annotations

from collections.abc import Sequence

from distill.v1 import judge_pb2, judge_pb2_grpc
from services.common.server import Service
from services.judge.settings import JudgeSettings


class JudgeService(judge_pb2_grpc.JudgeServiceServicer):
    """Every RPC answers UNIMPLEMENTED until issue 4 lands (inherited from the base class)."""


def build(settings: JudgeSettings) -> Sequence[Service]:
    return [Service.of(judge_pb2, judge_pb2_grpc, JudgeService())]
