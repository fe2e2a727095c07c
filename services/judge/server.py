"""gRPC servicer of the judge: config first, then groups judged while they stream in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from distill.v1 import judge_pb2, judge_pb2_grpc
from services.common.judging.models import JudgeModels
from services.common.metrics import JudgeMetrics
from services.common.providers import EndpointPolicy, Limits, RetryPolicy
from services.common.server import Service
from services.common.specs.layout import teacher_cache_prefix
from services.common.storage import ArtifactStore
from services.common.teacher_cache import TeacherCache
from services.judge.settings import JudgeSettings
from services.judge.stream import OpenModels, judge_stream


class JudgeService(judge_pb2_grpc.JudgeServiceServicer):
    def __init__(self, store: ArtifactStore,
                 open_models: OpenModels | None,
                 max_concurrent_groups: int, metrics: JudgeMetrics | None = None) -> None:
        self.store = store
        self.open_models = open_models  # None: programmatic judges only
        self.max_concurrent_groups = max_concurrent_groups
        self.metrics = metrics or JudgeMetrics()

    async def Judge(self, request_iterator: AsyncIterator[judge_pb2.JudgeRequest], context):  # noqa: N802
        responses = judge_stream(request_iterator, self.store, self.open_models,
                                 self.max_concurrent_groups, context.cancelled)
        async with contextlib.aclosing(responses):  # its models close when the call ends
            async for response in responses:
                self.metrics.observe(response)
                yield response


def project_models(store: ArtifactStore, limits: Limits, retry: RetryPolicy,
                   policy: EndpointPolicy) -> OpenModels:
    """Opens a project's judge models for a run: their calls are cached in that project's
    folder, each entry naming the run that paid for it."""
    def open_models(project: str, run_id: str) -> JudgeModels:
        return JudgeModels(limits, retry, policy,
                           cache=TeacherCache(store, teacher_cache_prefix(project)),
                           run_id=run_id)
    return open_models


def build(settings: JudgeSettings) -> Sequence[Service]:
    store = settings.open_store()
    limits = Limits(settings.max_concurrent_calls, settings.requests_per_minute,
                    settings.tokens_per_minute, settings.max_retries)

    open_models = project_models(store, limits, RetryPolicy(settings.max_retries),
                                 settings.endpoint_policy())
    servicer = JudgeService(store, open_models, settings.max_concurrent_groups)
    return [Service.of(judge_pb2, judge_pb2_grpc, servicer, metrics=servicer.metrics.registry)]
