"""The model provider layer shared by the generator and the judge.

    config = resolve_model_spec(spec, field="teacher", default_temperature=0.8)
    provider = open_provider(config, field="teacher",          # openai | anthropic | local
                             policy=settings.endpoint_policy())
    client = ModelClient(provider, price=config.price, limiter=RateLimiter(Limits(...)),
                         retry=RetryPolicy(max_retries=6), cache=TeacherCache(store))
    samples = await client.samples(messages, range(4), SamplingParams(0.8, 512))
    completion, latency = await client.complete(CompletionRequest(messages, temperature=0))

`ModelProvider.complete(request) -> Completion` is the whole provider interface; the client
adds rate limits, retries, the teacher cache, usage and cost.
"""

from services.common.providers.base import (
    ROLES,
    Choice,
    Completion,
    CompletionRequest,
    Message,
    ModelProvider,
    RetryableProviderError,
)
from services.common.providers.client import CallStats, ModelClient, Paid, Sample, SamplingParams
from services.common.providers.endpoints import EndpointPolicy, authorize
from services.common.providers.limits import Limits, RateLimiter
from services.common.providers.retry import RetryPolicy
from services.common.providers.spec import (
    ModelConfig,
    open_provider,
    read_api_key,
    resolve_model_spec,
)

__all__ = [
    "ROLES",
    "CallStats",
    "Choice",
    "Completion",
    "CompletionRequest",
    "EndpointPolicy",
    "Limits",
    "Message",
    "ModelClient",
    "ModelConfig",
    "ModelProvider",
    "Paid",
    "RateLimiter",
    "RetryPolicy",
    "RetryableProviderError",
    "Sample",
    "SamplingParams",
    "authorize",
    "open_provider",
    "read_api_key",
    "resolve_model_spec",
]
