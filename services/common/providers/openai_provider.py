"""`openai`: the official SDK; with `base_url`, any OpenAI-compatible server (vLLM, llama.cpp
server, Ollama, OpenRouter).

`n` is sent when the server is known or assumed to honour it (mode "auto" or "native"); in
"auto" a reply with fewer choices than asked marks the server as ignoring `n`, and the caller
fetches the rest with separate calls.
"""

from __future__ import annotations

from typing import Any, Literal

from services.common import errors
from services.common.providers.base import (
    Choice,
    Completion,
    CompletionRequest,
    Redactor,
    RetryableProviderError,
    call_sdk,
    fatal_error,
    is_retryable_status,
    parse_retry_after,
    upstream_message,
)

NMode = Literal["auto", "native", "separate"]


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str = "",
        pinned: tuple[str, ...] = (),
        timeout_seconds: float = 60.0,
        n_mode: NMode = "auto",
        echo_errors: bool = True,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.supports_n: bool | None = {"auto": None, "native": True, "separate": False}[n_mode]
        self._redact = Redactor((api_key,))
        self._echo_errors = echo_errors
        self._where = f"teacher openai/{model}" + (f" at {base_url}" if base_url else "")
        import openai  # here, not at the top: the SDK takes a second to import

        from services.common.providers.pinning import sdk_http_client

        self._sdk = openai
        # Retries are ours (shared limiter, Retry-After pauses everyone): the SDK's are off.
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout_seconds,
            max_retries=0,
            # The SDK's aiohttp transport: about a third less CPU per call than its default
            # httpx pool at dozens of calls in flight (the pool scans every connection per call).
            # No redirects: a base_url's server could otherwise send the call somewhere the
            # address policy (endpoints.py) never checked. With `pinned` (a spec's own
            # base_url), connections go only to the addresses that policy checked.
            http_client=sdk_http_client(openai, base_url, pinned),
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        kwargs: dict[str, Any] = {
            "messages": [m.as_dict() for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.json_object:
            kwargs["response_format"] = {"type": "json_object"}
        if request.n > 1 and self.supports_n is not False:
            # (A request built before a probe found that the server ignores `n` gets one
            # choice; the caller asks again for the samples a reply lacks.)
            kwargs["n"] = request.n
        reply = await call_sdk(self._sdk, self._create(kwargs), self._where, self._redact,
                               self._status_error)
        return self._completion(reply, request)

    async def _create(self, body: dict[str, Any]) -> Any:
        """POST /chat/completions through the SDK's documented `post` for requests it has no
        typed method for. `create` costs twice the CPU per call (at 64 in flight it made the
        fan-out CPU-bound): it walks the body against its TypedDicts and builds pydantic reply
        models, and our body is plain JSON already. The reply comes back as parsed JSON; status
        errors, timeouts and connection errors are the SDK's exceptions as with `create`."""
        return await self._client.post(
            "/chat/completions", body={"model": self.model, **body}, cast_to=object)

    def _completion(self, reply: Any, request: CompletionRequest) -> Completion:
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list) or not choices or not all(
                isinstance(c, dict) for c in choices):
            raise RetryableProviderError(f"{self._where} sent a reply without choices")
        parsed: list[Choice] = []
        for choice in sorted(choices, key=lambda c: c.get("index") or 0):
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            if not isinstance(text, str):
                raise RetryableProviderError(f"{self._where} sent a choice without text content")
            parsed.append(Choice(text, str(choice.get("finish_reason") or "")))
        if request.n > 1 and self.supports_n is None:
            self.supports_n = len(parsed) >= request.n
        usage = reply.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Completion(
            tuple(parsed[: request.n]), int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0), str(reply.get("model") or ""))

    def _status_error(self, exc: Any) -> Exception:
        status = exc.status_code
        message = upstream_message(exc, _provider_message, self._redact, self._echo_errors)
        if status == 429 and _error_code(exc) == "insufficient_quota":
            # Out of credit, not too fast: waiting will not help.
            return errors.ResourceExhausted(f"{self._where} answered HTTP 429: {message}")
        if is_retryable_status(status):
            return RetryableProviderError(
                f"{self._where} answered HTTP {status}: {message}",
                status=status,
                retry_after=parse_retry_after(exc.response.headers),
            )
        return fatal_error(self._where, status, message)

    async def aclose(self) -> None:
        await self._client.close()


def _error_body(exc: Any) -> dict[str, Any]:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return body if isinstance(body, dict) else {}


def _error_code(exc: Any) -> str:
    return str(_error_body(exc).get("code") or "")


def _provider_message(exc: Any) -> str:
    body = _error_body(exc)
    message = body.get("message") if body else None
    if isinstance(message, str) and message:
        return message[:1000]
    return (exc.message or "no message")[:1000]
