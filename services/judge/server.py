"""gRPC servicer of the judge: config first, then groups judged while they stream in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from distill.v1 import judge_pb2, judge_pb2_grpc
from services.common.errors import InvalidArgument
from services.common.metrics import JudgeMetrics
from services.common.providers import Limits, RetryPolicy
from services.common.server import Service
from services.common.specs.judge import JudgeSpec, judge_spec
from services.common.storage import ArtifactStore
from services.judge.composite import Judge
from services.judge.models import JudgeModels
from services.judge.session import JudgeSession
from services.judge.settings import JudgeSettings
from services.judge.spec import build_judge

_DONE = object()


class JudgeService(judge_pb2_grpc.JudgeServiceServicer):
    def __init__(self, store: ArtifactStore,
                 open_models: Callable[[], JudgeModels] | None,
                 max_concurrent_groups: int, metrics: JudgeMetrics | None = None) -> None:
        self.store = store
        self.open_models = open_models  # None: programmatic judges only
        self.max_concurrent_groups = max_concurrent_groups
        self.metrics = metrics or JudgeMetrics()

    async def Judge(self, request_iterator: AsyncIterator[judge_pb2.JudgeRequest], context):  # noqa: N802
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("config"):
            raise InvalidArgument("the first message must be a config (judge spec, top_k, ...)")
        config = judge_spec(first.config)
        models = self.open_models() if self.open_models else None
        try:
            judge = build_judge(config.judge, models)
            async for response in self._run(request_iterator, context, judge, config):
                self.metrics.observe(response)
                yield response
        finally:
            if models is not None:
                await models.aclose()

    async def _run(self, request_iterator, context, judge: Judge, config: JudgeSpec):
        session = JudgeSession(judge, config, self.store)
        results: asyncio.Queue = asyncio.Queue()
        reader = asyncio.create_task(self._judge_all(request_iterator, session, results))
        writing: asyncio.Future | None = None
        delivered = False
        try:
            while (item := await results.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield judge_pb2.JudgeResponse(group=item)
            await reader
            if context.cancelled():
                return
            writing = asyncio.ensure_future(asyncio.to_thread(session.finish))
            summary = await asyncio.shield(writing)
            if context.cancelled():
                return
            yield judge_pb2.JudgeResponse(summary=summary)
            delivered = True
        finally:
            reader.cancel()  # a client that goes away stops the judging it paid for
            if writing is not None and not delivered:
                # Cancelled reads can look like a half-close: never leave a curated dataset
                # behind for a client that did not receive it.
                with contextlib.suppress(Exception):
                    await asyncio.shield(writing)
                await asyncio.to_thread(session.discard)
            session.close()

    async def _judge_all(self, requests: AsyncIterator[judge_pb2.JudgeRequest],
                         session: JudgeSession, results: asyncio.Queue) -> None:
        """Reads groups and judges up to max_concurrent_groups at once, results in any order."""
        slots = asyncio.Semaphore(self.max_concurrent_groups)
        tasks: set[asyncio.Task] = set()

        async def one(group):
            try:
                await results.put(await session.judge_group(group))
            except Exception as exc:  # noqa: BLE001 - surfaced on the stream by the consumer
                await results.put(exc)
            finally:
                slots.release()

        try:
            async for request in requests:
                if not request.HasField("group"):
                    raise InvalidArgument("only candidate groups may follow the config")
                await slots.acquire()
                task = asyncio.create_task(one(request.group))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
            await results.put(_DONE)
        except Exception as exc:  # noqa: BLE001 - surfaced on the stream by the consumer
            await results.put(exc)
        finally:
            for task in tasks:
                task.cancel()


def build(settings: JudgeSettings) -> Sequence[Service]:
    store = settings.open_store()
    limits = Limits(settings.max_concurrent_calls, settings.requests_per_minute,
                    settings.tokens_per_minute, settings.max_retries)

    def open_models() -> JudgeModels:
        return JudgeModels(store, limits, RetryPolicy(settings.max_retries),
                           settings.api_key_env_pattern)

    servicer = JudgeService(store, open_models, settings.max_concurrent_groups)
    return [Service.of(judge_pb2, judge_pb2_grpc, servicer, metrics=servicer.metrics.registry)]
