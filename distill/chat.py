"""Asking an alias through the router's OpenAI endpoint, with the official `openai` SDK: the same
call any application makes (`base_url` the router's, `model` the alias)."""

from __future__ import annotations

import os

import grpc

from distill.client import DistillClientError

# The router's HTTP port is its gRPC port (50056) + 2000.
DEFAULT_ROUTER_URL = "http://127.0.0.1:52056"

# OpenAI's HTTP statuses as the gRPC codes the CLI reports (and picks its exit code by).
_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
          403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
          413: grpc.StatusCode.INVALID_ARGUMENT, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
          503: grpc.StatusCode.UNAVAILABLE}


def ask(alias: str, text: str, *, router_url: str = DEFAULT_ROUTER_URL, api_key: str = "",
        max_tokens: int | None = None, temperature: float | None = None,
        timeout: float = 300.0) -> str:
    """The alias's answer to one user message. Errors are DistillClientError with the gRPC code
    matching the router's HTTP status (404 unknown alias: NOT_FOUND)."""
    try:
        import openai
    except ImportError:
        raise DistillClientError(grpc.StatusCode.FAILED_PRECONDITION,
                                 "asking an alias needs the openai package: "
                                 "pip install 'distill[providers]'") from None
    key = api_key or os.environ.get("DISTILL_API_KEY") or "none"  # the SDK refuses an empty key
    options = {k: v for k, v in (("max_tokens", max_tokens), ("temperature", temperature))
               if v is not None}
    client = openai.OpenAI(base_url=f"{router_url.rstrip('/')}/v1", api_key=key, max_retries=1,
                           timeout=timeout)
    try:
        answer = client.chat.completions.create(
            model=alias, messages=[{"role": "user", "content": text}], **options)
    except openai.APIStatusError as exc:
        code = _CODES.get(exc.status_code, grpc.StatusCode.UNKNOWN)
        raise DistillClientError(code, f"router answered {exc.status_code}: {exc.message}"
                                 ) from None
    except openai.APIConnectionError:
        raise DistillClientError(grpc.StatusCode.UNAVAILABLE,
                                 f"no router at {router_url}: start the suite with `distill up`, "
                                 "or pass --router / set DISTILL_ROUTER_URL") from None
    finally:
        client.close()
    return answer.choices[0].message.content or ""
