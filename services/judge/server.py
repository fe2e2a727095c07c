"""gRPC servicer of the judge: config first, then groups judged while they stream in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from distill.v1 import judge_pb2, judge_pb2_grpc
from services.common.judging.models import JudgeModels
from services.common.metrics import JudgeMetrics
from services.common.providers import Limits, RetryPolicy
from services.common.server import Service
from services.common.storage import ArtifactStore
from services.common.teacher_cache import TeacherCache
from services.judge.settings import JudgeSettings
from services.judge.stream import judge_stream


class JudgeService(judge_pb2_grpc.JudgeServiceServicer):
    def __init__(self, store: ArtifactStore,
                 open_models: Callable[[], JudgeModels] | None,
                 max_concurrent_groups: int, metrics: JudgeMetrics | None = None) -> None:
        self.store = store
        self.open_models = open_models  # None: programmatic judges only
        self.max_concurrent_groups = max_concurrent_groups
        self.metrics = metrics or JudgeMetrics()

    async def Judge(self, request_iterator: AsyncIterator[judge_pb2.JudgeRequest], context):  # noqa: N802
        models = self.open_models() if self.open_models else None
        try:
            async for response in judge_stream(request_iterator, self.store, models,
                                               self.max_concurrent_groups, context.cancelled):
                self.metrics.observe(response)
                yield response
        finally:
            if models is not None:
                await models.aclose()


def build(settings: JudgeSettings) -> Sequence[Service]:
    store = settings.open_store()
    limits = Limits(settings.max_concurrent_calls, settings.requests_per_minute,
                    settings.tokens_per_minute, settings.max_retries)

    def open_models() -> JudgeModels:
        return JudgeModels(limits, RetryPolicy(settings.max_retries),
                           settings.endpoint_policy(), cache=TeacherCache(store))

    servicer = JudgeService(store, open_models, settings.max_concurrent_groups)
    return [Service.of(judge_pb2, judge_pb2_grpc, servicer, metrics=servicer.metrics.registry)]
