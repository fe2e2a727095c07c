"""`anthropic`: Anthropic's messages wire, JSON over aiohttp (http_json.py says why not the
SDK). No `n`: one sample per call.

System messages go into the `system` parameter; the remaining turns are sent as they are (a
dataset's few-shot turns alternate user/assistant already).
"""

from __future__ import annotations

from typing import Any

from services.common.providers.base import (
    Choice,
    Completion,
    CompletionRequest,
    Redactor,
    RetryableProviderError,
)
from services.common.providers.http_json import HttpRefusal, JsonPoster
from services.common.providers.pinning import Pins

# Where the SDK sends a client without base_url, and the API version it asks for.
PUBLIC_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

# Anthropic's stop reasons on OpenAI's names, so candidates read the same whatever the teacher.
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
           "tool_use": "tool_calls", "refusal": "content_filter"}


class AnthropicProvider:
    name = "anthropic"
    supports_n: bool | None = False

    def __init__(
        self, model: str, *, api_key: str, base_url: str = "", pinned: tuple[str, ...] = (),
        timeout_seconds: float = 60.0, echo_errors: bool = True,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self._redact = Redactor((api_key,))
        self._echo_errors = echo_errors
        self._where = f"teacher anthropic/{model}" + (f" at {base_url}" if base_url else "")
        self._http = JsonPoster(
            f"{(base_url or PUBLIC_BASE_URL).rstrip('/')}/v1/messages",
            {"x-api-key": api_key, "anthropic-version": API_VERSION},
            timeout_seconds=timeout_seconds, where=self._where, redact=self._redact,
            refused=self._status_error, pins=Pins.of(base_url, pinned) if pinned else None)

    async def complete(self, request: CompletionRequest) -> Completion:
        if request.n != 1:
            raise ValueError("anthropic returns one sample per call")
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": [m.as_dict() for m in request.messages if m.role != "system"],
        }
        if system:
            body["system"] = system
        # Anthropic's temperature range is 0..1.
        body["temperature"] = min(request.temperature, 1.0)
        if request.top_p is not None:
            body["top_p"] = request.top_p
        reply = await self._http.post(body)
        content = reply.get("content") if isinstance(reply, dict) else None
        if not isinstance(content, list):
            raise RetryableProviderError(f"{self._where} sent a reply without content")
        text = "".join(
            block["text"] for block in content if isinstance(block, dict)
            and block.get("type") == "text" and isinstance(block.get("text"), str)
        )
        reason = str(reply.get("stop_reason") or "")
        usage = reply.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Completion(
            (Choice(text, _FINISH.get(reason, reason)),),
            int(usage.get("input_tokens") or 0),
            int(usage.get("output_tokens") or 0),
            str(reply.get("model") or ""),
        )

    def _status_error(self, refusal: HttpRefusal) -> Exception:
        return refusal.exception(self._where, refusal.message(self._redact, self._echo_errors))

    async def aclose(self) -> None:
        await self._http.aclose()
