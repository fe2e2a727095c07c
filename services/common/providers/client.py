"""`ModelClient`: a provider plus everything a job needs around it.

Rate limits (shared by all of the job's calls), retries with backoff, the teacher-call cache,
usage and cost. The generator asks it for samples; the judge for single completions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from distill.v1 import common_pb2
from services.common import errors
from services.common.models import Price
from services.common.providers.base import (
    Completion,
    CompletionRequest,
    Message,
    ModelProvider,
    RetryableProviderError,
)
from services.common.providers.limits import RateLimiter
from services.common.providers.retry import RetryPolicy
from services.common.spend import Spend
from services.common.teacher_cache import CachedSample, TeacherCache, cache_key

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class CallStats:
    """Running totals of one job's calls (progress events read them)."""

    # Provider calls that returned an answer (one call may carry several samples).
    requests: int = 0
    # Samples answered from the cache: no call, no cost.
    cached_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    # Attempts the provider answered with 429.
    rate_limited: int = 0


@dataclass(frozen=True)
class Sample:
    index: int
    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    # Provider calls this sample accounts for: 1, or 0 for the 2nd.. sample of an `n` call.
    requests: int
    cached: bool
    latency_seconds: float
    # The call as it was made (a cached sample's costs 0 now; this is what it cost then).
    paid: Paid


@dataclass(frozen=True)
class Paid:
    """The provider call a sample came from: the run (a generator's or a judge's) and prompt it
    was made for (empty when unknown), this sample's share of what it cost, and its cache key."""

    run_id: str
    prompt_id: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    call: str = ""

    def to_proto(self) -> common_pb2.PaidCall:
        return common_pb2.PaidCall(
            run_id=self.run_id, prompt_id=self.prompt_id, call=self.call,
            usage=Spend(self.requests, 0, self.input_tokens, self.output_tokens,
                        self.cost_usd).to_proto())


@dataclass(frozen=True)
class SamplingParams:
    temperature: float
    max_tokens: int
    top_p: float | None = None


class ModelClient:
    def __init__(
        self,
        provider: ModelProvider,
        *,
        price: Price,
        limiter: RateLimiter,
        retry: RetryPolicy,
        cache: TeacherCache | None = None,
        fatal_stops_all: bool = True,
    ) -> None:
        self.provider = provider
        # A job stops all its calls at the first fatal answer (401, 400); a server answering
        # many callers (the router) fails only the call that got it.
        self.fatal_stops_all = fatal_stops_all
        self.price = price
        self.limiter = limiter
        self.retry = retry
        self.cache = cache
        self.stats = CallStats()
        self._identity = {
            "provider": provider.name,
            "model": provider.model,
            "base_url": getattr(provider, "base_url", "") or "",
        }

    async def aclose(self) -> None:
        await self.provider.aclose()

    # --- one call, limited and retried --------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> tuple[Completion, float]:
        """One provider call under the limiter, retried; returns (completion, latency seconds).

        Fatal provider answers raise their DistillError at once; retryable failures past
        max_retries raise Unavailable (ResourceExhausted when the last one was a 429).
        """
        attempt = 0
        while True:
            async with self.limiter.slot(request.estimated_tokens()) as slot:
                started = time.perf_counter()
                try:
                    completion = await self.provider.complete(request)
                except RetryableProviderError as exc:
                    failure = exc
                    slot.actual_tokens = 0  # refused: it used none of the token budget
                except errors.DistillError as exc:
                    # Fatal (401, 400, ...): stop the job's other calls before this slot frees.
                    if self.fatal_stops_all:
                        self.limiter.abort(exc)
                    raise
                else:
                    latency = time.perf_counter() - started
                    used = completion.input_tokens + completion.output_tokens
                    slot.actual_tokens = used or None
                    self._account(completion)
                    return completion, latency
            if failure.rate_limited:
                self.stats.rate_limited += 1
            if attempt >= self.retry.max_retries:
                cls = errors.ResourceExhausted if failure.rate_limited else errors.Unavailable
                raise cls(f"{failure} (gave up after {attempt + 1} attempts)")
            attempt += 1
            self.stats.retries += 1
            delay = self.retry.delay(attempt, failure.retry_after)
            if failure.rate_limited:
                self.limiter.pause(delay)  # everyone waits, not only this call
            log.warning(
                "teacher call failed; retrying",
                extra={"error": str(failure), "attempt": attempt, "delay_s": round(delay, 3)},
            )
            await asyncio.sleep(delay)

    def _account(self, completion: Completion) -> None:
        self.stats.requests += 1
        self.stats.input_tokens += completion.input_tokens
        self.stats.output_tokens += completion.output_tokens
        self.stats.cost_usd += self.price.cost_usd(
            completion.input_tokens, completion.output_tokens
        )

    # --- samples, cached ----------------------------------------------------------------------

    async def samples(
        self, messages: Sequence[Message], indices: Sequence[int], params: SamplingParams,
        *, run_id: str = "", prompt_id: str = "",
    ) -> list[Sample]:
        """One sample per index, each from the cache when it holds one, else from the
        provider (several per call with `n` where the provider honours it). Every sample a call
        returns is cached before this returns, so an interrupted run repeats no finished call;
        the entry names who paid for it (`run_id`, `prompt_id`: a generator's or a judge's
        run)."""
        messages = tuple(messages)
        wire = [m.as_dict() for m in messages]
        base = CompletionRequest(
            messages, params.temperature, params.max_tokens, params.top_p
        )
        keys = {i: cache_key(self._identity, base.parameters(), wire, i) for i in indices}
        found: dict[int, Sample] = {}
        if self.cache is not None:
            hits = await asyncio.gather(*(self.cache.get(keys[i]) for i in indices))
            for i, hit in zip(indices, hits, strict=True):
                if hit is not None:
                    # Nothing is paid again; latency and cost are the original call's.
                    found[i] = Sample(i, hit.text, hit.finish_reason, 0, 0, 0.0, 1, True,
                                      hit.latency_seconds, Paid(
                                          hit.run_id, hit.prompt_id, hit.requests,
                                          hit.input_tokens, hit.output_tokens, hit.cost_usd,
                                          keys[i]))
                    self.stats.cached_requests += 1
        missing = [i for i in indices if i not in found]
        while missing:
            if len(missing) > 1 and self.provider.supports_n is not False:
                batches = [missing]
            else:
                batches = [[i] for i in missing]
            results = await gather_or_cancel(
                *(self._call_for(base, batch, keys, run_id, prompt_id) for batch in batches)
            )
            for got in results:
                found.update((s.index, s) for s in got)
            missing = [i for i in missing if i not in found]
        return [found[i] for i in indices]

    async def _call_for(
        self, base: CompletionRequest, batch: list[int], keys: dict[int, str], run_id: str,
        prompt_id: str,
    ) -> list[Sample]:
        request = CompletionRequest(
            base.messages, base.temperature, base.max_tokens, base.top_p, n=len(batch)
        )
        completion, latency = await self.complete(request)
        got = list(zip(batch, completion.choices, strict=False))  # fewer when `n` was ignored
        count = len(got)
        samples = []
        for position, (index, choice) in enumerate(got):
            # Split the call's usage over its samples so that the sums stay exact.
            in_tokens = _share(completion.input_tokens, count, position)
            out_tokens = _share(completion.output_tokens, count, position)
            cost = self.price.cost_usd(in_tokens, out_tokens)
            requests = 1 if position == 0 else 0
            samples.append(Sample(
                index, choice.text, choice.finish_reason, in_tokens, out_tokens, cost,
                requests, False, latency,
                Paid(run_id, prompt_id, requests, in_tokens, out_tokens, cost, keys[index]),
            ))
        if self.cache is not None:
            await asyncio.gather(*(
                self.cache.put(keys[s.index], CachedSample(
                    s.text, s.finish_reason, s.input_tokens, s.output_tokens, s.cost_usd,
                    latency, completion.model, run_id=run_id, prompt_id=prompt_id,
                    requests=s.requests,
                ))
                for s in samples
            ))
        return samples


async def gather_or_cancel(*coros: Awaitable[T]) -> list[T]:
    """Like asyncio.gather, but the first failure cancels the others (no orphan calls keep
    spending after a job has failed) and is raised as itself, not as an ExceptionGroup."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    # Every exception is retrieved, or asyncio logs "Task exception was never retrieved".
    failures = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    if failures:
        raise failures[0]
    return [task.result() for task in tasks]


def _share(total: int, parts: int, position: int) -> int:
    return total // parts + (1 if position < total % parts else 0)
