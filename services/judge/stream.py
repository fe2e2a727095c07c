"""One Judge stream end to end: the config, then groups judged while they stream in (at most
`max_concurrent_groups` at once, answered in order of completion), then the summary with the
curated dataset. The judge's models are opened for the config's project (whose cache they use)
and closed when the stream ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from distill.v1 import common_pb2, judge_pb2
from services.common.completions import Emit, completions
from services.common.errors import InvalidArgument
from services.common.judging.build import build_judge
from services.common.judging.models import JudgeModels
from services.common.specs.judge import JudgeSpec, judge_spec
from services.common.storage import ArtifactStore
from services.judge.session import JudgeSession

OpenModels = Callable[[str, str], JudgeModels]  # a project's judge models, for a run id


async def judge_stream(requests: AsyncIterator[judge_pb2.JudgeRequest], store: ArtifactStore,
                       open_models: OpenModels | None, max_concurrent_groups: int,
                       cancelled: Callable[[], bool]) -> AsyncIterator[judge_pb2.JudgeResponse]:
    """`open_models` None: programmatic judges only. `cancelled()`: whether the client went
    away (its reads can look like a half-close)."""
    first = await anext(aiter(requests), None)
    if first is None or not first.HasField("config"):
        raise InvalidArgument("the first message must be a config (judge spec, top_k, ...)")
    config = judge_spec(first.config)
    models = open_models(config.project, config.run_id) if open_models else None
    judged = _judged(requests, store, config, models, max_concurrent_groups, cancelled)
    try:
        async with contextlib.aclosing(judged):
            async for response in judged:
                yield response
    finally:
        if models is not None:
            await models.aclose()


async def _judged(requests: AsyncIterator[judge_pb2.JudgeRequest], store: ArtifactStore,
                  config: JudgeSpec, models: JudgeModels | None, max_concurrent_groups: int,
                  cancelled: Callable[[], bool]) -> AsyncIterator[judge_pb2.JudgeResponse]:
    session = JudgeSession(build_judge(config.judge, models), config, store)

    async def judge_one(group: common_pb2.CandidateGroup, emit: Emit) -> None:
        emit(await session.judge_group(group))

    judged = completions(_groups(requests), judge_one, limit=max_concurrent_groups)
    writing: asyncio.Future | None = None
    delivered = False
    try:
        async with contextlib.aclosing(judged):  # a client that goes away stops the judging
            async for group in judged:
                yield judge_pb2.JudgeResponse(group=group)
        if cancelled():
            return
        writing = asyncio.ensure_future(asyncio.to_thread(session.finish))
        summary = await asyncio.shield(writing)
        if cancelled():
            return
        yield judge_pb2.JudgeResponse(summary=summary)
        delivered = True
    finally:
        if writing is not None and not delivered:
            # Never leave a curated dataset behind for a client that did not receive it.
            with contextlib.suppress(Exception):
                await asyncio.shield(writing)
            await asyncio.to_thread(session.discard)
        session.close()


async def _groups(requests: AsyncIterator[judge_pb2.JudgeRequest]
                  ) -> AsyncIterator[common_pb2.CandidateGroup]:
    async for request in requests:
        if not request.HasField("group"):
            raise InvalidArgument("only candidate groups may follow the config")
        yield request.group
