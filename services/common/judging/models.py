"""The LLM judge's model calls, through the provider layer the generator uses.

The judge service's calls go through the same limiter, retries and cache: a judge at
temperature 0 asked the same question gives the same answer, so a resumed job does not pay twice
for it. The router's live judge has no cache (live answers rarely repeat), and a fatal answer
fails only the call that got it, as for its teachers.
"""

from __future__ import annotations

from services.common.judging.llm_judge import Complete, Reply
from services.common.providers import (
    EndpointPolicy,
    Limits,
    Message,
    ModelClient,
    RateLimiter,
    RetryPolicy,
    SamplingParams,
    open_provider,
)
from services.common.specs.judge import LlmJudgeSpec
from services.common.teacher_cache import TeacherCache


class JudgeModels:
    """Opens one client per judge model (for a Judge stream, or an alias version's live
    judge); `aclose()` when done with them."""

    def __init__(self, limits: Limits, retry: RetryPolicy, policy: EndpointPolicy, *,
                 cache: TeacherCache | None = None, fatal_stops_all: bool = True,
                 run_id: str = "") -> None:
        self.limits = limits
        self.retry = retry
        self.policy = policy
        self.cache = cache
        self.run_id = run_id  # the Judge run that pays for the calls made (cache entries)
        self.fatal_stops_all = fatal_stops_all
        self.clients: list[ModelClient] = []

    def __call__(self, spec: LlmJudgeSpec) -> Complete:
        config = spec.model
        provider = open_provider(config, field=spec.field, policy=self.policy)
        client = ModelClient(provider, price=config.price, limiter=RateLimiter(self.limits),
                             retry=self.retry, cache=self.cache,
                             fatal_stops_all=self.fatal_stops_all)
        self.clients.append(client)
        params = SamplingParams(config.temperature, config.max_tokens, config.top_p)

        async def complete(messages: list[dict[str, str]], attempt: int, prompt_id: str) -> Reply:
            wire = [Message(m["role"], m["content"]) for m in messages]
            (sample,) = await client.samples(wire, [attempt], params, run_id=self.run_id,
                                             prompt_id=prompt_id)
            return Reply(sample.text, sample.input_tokens, sample.output_tokens, sample.cost_usd,
                         sample.paid if sample.cached else None)

        return complete

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
