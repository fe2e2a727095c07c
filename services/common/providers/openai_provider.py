"""`openai`: OpenAI's chat-completions wire, for api.openai.com or, with `base_url`, any
OpenAI-compatible server (vLLM, llama.cpp server, Ollama, OpenRouter); JSON over aiohttp
(http_json.py says why not the SDK).

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
)
from services.common.providers.http_json import HttpRefusal, JsonPoster
from services.common.providers.pinning import Pins

# Where the SDK sends a client without base_url.
PUBLIC_BASE_URL = "https://api.openai.com/v1"

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
        # Retries are ours (shared limiter, Retry-After pauses everyone), as are redirects (none).
        self._http = JsonPoster(
            f"{(base_url or PUBLIC_BASE_URL).rstrip('/')}/chat/completions",
            {"Authorization": f"Bearer {api_key}"}, timeout_seconds=timeout_seconds,
            where=self._where, redact=self._redact, refused=self._status_error,
            pins=Pins.of(base_url, pinned) if pinned else None)

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
        reply = await self._http.post({"model": self.model, **kwargs})
        return self._completion(reply, request)

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

    def _status_error(self, refusal: HttpRefusal) -> Exception:
        message = refusal.message(self._redact, self._echo_errors)
        if refusal.status == 429 and refusal.error().get("code") == "insufficient_quota":
            # Out of credit, not too fast: waiting will not help.
            return errors.ResourceExhausted(f"{self._where} answered HTTP 429: {message}")
        return refusal.exception(self._where, message)

    async def aclose(self) -> None:
        await self._http.aclose()
