"""The provider interface: one async call, `complete(request) -> Completion`.

A provider speaks one wire protocol (OpenAI chat completions, Anthropic messages, llama.cpp in
process) and nothing else: no retries, no rate limiting, no cache, no prices. It turns every
failure into one of two exceptions, so the layer above decides what to do without knowing the SDK:

- `RetryableProviderError`: 429, 5xx, timeouts, connection errors, malformed bodies;
- a `services.common.errors.DistillError` (InvalidArgument, Unauthenticated, PermissionDenied,
  NotFound, ...): the provider refused the request and asking again will not help.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from services.common import errors

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class CompletionRequest:
    """One provider call. `n` asks for that many samples in one call where the API allows it."""

    messages: tuple[Message, ...]
    temperature: float = 0.8
    max_tokens: int = 512
    top_p: float | None = None
    n: int = 1
    # Used by providers that take one (OpenAI-compatible servers, llama.cpp); None: random.
    seed: int | None = None
    # Ask for a JSON object reply (judges); providers without a JSON mode ignore it.
    json_object: bool = False

    def parameters(self) -> dict[str, object]:
        """The sampling parameters that change the answer: part of the teacher-cache key."""
        params: dict[str, object] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.top_p is not None:
            params["top_p"] = self.top_p
        if self.json_object:
            params["json_object"] = True
        return params

    def estimated_tokens(self) -> int:
        """Tokens the call may use, for the tokens-per-minute limiter before usage is known:
        ~4 characters a token for the prompt (plus a few per message), max_tokens per sample."""
        prompt_chars = sum(len(m.content) for m in self.messages)
        return math.ceil(prompt_chars / 4) + 4 * len(self.messages) + self.max_tokens * self.n


@dataclass(frozen=True)
class Choice:
    text: str
    # "stop", "length", ... (Anthropic's reasons mapped onto OpenAI's names).
    finish_reason: str


@dataclass(frozen=True)
class Completion:
    """What one call returned: up to `n` choices (fewer when the server ignored `n`)."""

    choices: tuple[Choice, ...]
    input_tokens: int
    output_tokens: int
    # The model id the provider says answered (may differ from the one asked for).
    model: str = ""


class ModelProvider(Protocol):
    """What the generator and the judge call. Implementations: openai, anthropic, local."""

    name: str
    model: str
    # Whether one call can return several samples (`n`); None: not known yet (auto-detected).
    supports_n: bool | None

    async def complete(self, request: CompletionRequest) -> Completion: ...

    async def aclose(self) -> None: ...


class RetryableProviderError(Exception):
    """A failure worth retrying after a pause: 429, 5xx, timeout, connection, malformed body."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def rate_limited(self) -> bool:
        return self.status == 429


# Statuses that end the stream at once, with the matching gRPC status (issue 3, item 3).
_FATAL_BY_STATUS: dict[int, type[errors.DistillError]] = {
    400: errors.InvalidArgument,
    401: errors.Unauthenticated,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    413: errors.InvalidArgument,
    422: errors.InvalidArgument,
}


def is_retryable_status(status: int) -> bool:
    return status in (408, 409, 425, 429) or status >= 500


def fatal_error(where: str, status: int, message: str) -> errors.DistillError:
    """The DistillError for a non-retryable HTTP status (other 4xx map to InvalidArgument)."""
    cls = _FATAL_BY_STATUS.get(status, errors.InvalidArgument)
    return cls(f"{where} answered HTTP {status}: {message}")


def parse_retry_after(headers: object) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds only; HTTP dates are rare here)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and 0 <= seconds <= 3600:
            return seconds
    return None


@dataclass
class Redactor:
    """Removes secrets (API keys) from any text that leaves the provider layer."""

    secrets: Sequence[str] = field(default_factory=tuple)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
        return text
