"""The LLM judge's model calls, through the provider layer the generator uses.

Judge calls go through the same limiter, retries and cache: a judge at temperature 0 asked the
same question gives the same answer, so a resumed job does not pay twice for it.
"""

from __future__ import annotations

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
from services.common.storage import ArtifactStore
from services.common.teacher_cache import TeacherCache
from services.judge.llm_judge import Complete, Reply


class JudgeModels:
    """Opens one client per judge model for a stream; `aclose()` when the stream ends."""

    def __init__(self, store: ArtifactStore, limits: Limits, retry: RetryPolicy,
                 policy: EndpointPolicy) -> None:
        self.store = store
        self.limits = limits
        self.retry = retry
        self.policy = policy
        self.clients: list[ModelClient] = []

    def __call__(self, spec: LlmJudgeSpec) -> Complete:
        config = spec.model
        provider = open_provider(config, field=spec.field, policy=self.policy)
        client = ModelClient(provider, price=config.price, limiter=RateLimiter(self.limits),
                             retry=self.retry, cache=TeacherCache(self.store))
        self.clients.append(client)
        params = SamplingParams(config.temperature, config.max_tokens, config.top_p)

        async def complete(messages: list[dict[str, str]], attempt: int) -> Reply:
            wire = [Message(m["role"], m["content"]) for m in messages]
            (sample,) = await client.samples(wire, [attempt], params)
            return Reply(sample.text, sample.input_tokens, sample.output_tokens, sample.cost_usd)

        return complete

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
