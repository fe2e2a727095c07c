"""`anthropic`: the official SDK (messages API). No `n`: one sample per call.

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
    call_sdk,
    fatal_error,
    is_retryable_status,
    parse_retry_after,
    upstream_message,
)

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
        import anthropic  # here, not at the top: the SDK takes seconds to import

        from services.common.providers.pinning import sdk_http_client

        self._sdk = anthropic
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout_seconds,
            max_retries=0,
            # See OpenAIProvider.
            http_client=sdk_http_client(anthropic, base_url, pinned),
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        if request.n != 1:
            raise ValueError("anthropic returns one sample per call")
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": [m.as_dict() for m in request.messages if m.role != "system"],
        }
        if system:
            kwargs["system"] = system
        # This SDK version has no sampling parameters in its signature; the API still takes
        # them in the body. Anthropic's temperature range is 0..1.
        sampling: dict[str, float] = {"temperature": min(request.temperature, 1.0)}
        if request.top_p is not None:
            sampling["top_p"] = request.top_p
        kwargs["extra_body"] = sampling
        reply = await call_sdk(self._sdk, self._client.messages.create(**kwargs), self._where,
                               self._redact, self._status_error)
        content = getattr(reply, "content", None)
        if not isinstance(content, list):
            raise RetryableProviderError(f"{self._where} sent a reply without content")
        text = "".join(
            block.text for block in content if getattr(block, "type", "") == "text"
            and isinstance(getattr(block, "text", None), str)
        )
        reason = str(getattr(reply, "stop_reason", "") or "")
        usage = getattr(reply, "usage", None)
        return Completion(
            (Choice(text, _FINISH.get(reason, reason)),),
            int(getattr(usage, "input_tokens", 0) or 0),
            int(getattr(usage, "output_tokens", 0) or 0),
            str(getattr(reply, "model", "") or ""),
        )

    def _status_error(self, exc: Any) -> Exception:
        status = exc.status_code
        message = upstream_message(exc, _provider_message, self._redact, self._echo_errors)
        if is_retryable_status(status):
            return RetryableProviderError(
                f"{self._where} answered HTTP {status}: {message}",
                status=status,
                retry_after=parse_retry_after(exc.response.headers),
            )
        return fatal_error(self._where, status, message)

    async def aclose(self) -> None:
        await self._client.close()


def _provider_message(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str) and message:
            return message[:1000]
    return (exc.message or "no message")[:1000]
