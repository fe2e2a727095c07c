"""OpenAI's HTTP API on the router: POST /v1/chat/completions (JSON, or SSE with stream: true)
and GET /v1/models, with OpenAI-shaped errors ({"error": {message, type, param, code}}).

Served by uvicorn on the router's event loop, beside the gRPC server, so both share the
engines, the alias records and the teacher clients.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

import grpc
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.common.auth import Authenticator
from services.common.errors import DistillError, InvalidArgument
from services.router.auth import caller_project
from services.router.chat import Answer, ChatCall, Delta, from_openai
from services.router.routing import Router
from services.router.settings import RouterSettings

# gRPC status → (HTTP status, OpenAI error type).
_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "server_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "server_error"),
}


class _BodyTooLarge(Exception):
    pass


def error_response(status: int, kind: str, message: str, *, param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status)


def _from_error(exc: DistillError) -> JSONResponse:
    status, kind = _HTTP.get(exc.code, (500, "server_error"))
    message = str(exc)
    field, colon, _ = message.partition(":")
    param = field if colon and " " not in field else None  # messages start "field: ..."
    code = {404: "model_not_found", 401: "invalid_api_key"}.get(status)
    return error_response(status, kind, message, param=param, code=code)


class HttpApi:
    def __init__(self, settings: RouterSettings, router: Router,
                 authenticator: Authenticator) -> None:
        self._settings = settings
        self._router = router
        self._callers = authenticator
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
        ])
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        # The protocol is named (IPPROTO_TCP, not 0): asyncio turns Nagle off (TCP_NODELAY) only
        # on sockets that say TCP, accepted ones included. With Nagle on, every answer waited
        # about 40 ms for the client's delayed ACK between uvicorn's header and body writes.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.port = sock.getsockname()[1]
        # The router's certificate serves its HTTP API too: callers send their keys here.
        # proxy_headers off: nothing here reads the client's address or scheme, so uvicorn's
        # X-Forwarded-* middleware would be one more layer on every request for nothing.
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                proxy_headers=False,
                                timeout_graceful_shutdown=self._settings.grace_seconds,
                                ssl_certfile=self._settings.tls_cert_file,
                                ssl_keyfile=self._settings.tls_key_file)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:  # startup binds nothing new: it ends at once
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            await self._task

    # --- endpoints ----------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        try:
            project = await caller_project(request.headers.get("authorization"), self._callers)
            aliases = await self._router.aliases(project)
        except DistillError as exc:
            return _from_error(exc)
        return JSONResponse({"object": "list", "data": [
            {"id": a.name, "object": "model", "created": a.update_time.seconds,
             "owned_by": project} for a in aliases]})

    async def chat_completions(self, request: Request) -> Response:
        try:
            project = await caller_project(request.headers.get("authorization"), self._callers)
            body = await self._json_body(request)
            call = from_openai(body)
            if request.headers.get("x-distill-trace", "").lower() == "off":
                call = replace(call, trace=False)
            if body.get("stream"):
                return await self._stream(call, project)
            answer = await self._router.answer(call, project)
        except _BodyTooLarge:
            limit = self._settings.max_body_bytes
            return error_response(413, "invalid_request_error",
                                  f"body: over the limit of {limit} bytes", param="body",
                                  code="request_too_large")
        except DistillError as exc:
            return _from_error(exc)
        return JSONResponse(_completion(call, answer), headers=_served_headers(answer))

    async def _json_body(self, request: Request) -> Any:
        limit = self._settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _BodyTooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _BodyTooLarge
        try:
            return json.loads(body)
        except UnicodeDecodeError:
            raise InvalidArgument("body: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"body: malformed JSON ({exc.msg} at line {exc.lineno} "
                                  f"column {exc.colno})") from None

    async def _stream(self, call: ChatCall, project: str) -> Response:
        deltas = self._router.stream(call, project)
        # The first piece is awaited here, so a refusal (unknown alias, max_tokens, a dead
        # engine) is an HTTP error, not a 200 whose stream says so.
        try:
            first = await anext(deltas)
        except BaseException:
            await deltas.aclose()
            raise
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def chunk(delta: dict, finish: str | None, usage: dict | None = None) -> str:
            data = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": call.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n"

        async def events() -> AsyncIterator[str]:
            try:
                yield chunk({"role": "assistant", "content": ""}, None)
                delta: Delta | None = first
                while delta is not None:
                    if delta.final is not None:
                        yield chunk({}, delta.final.finish_reason, _usage(delta.final))
                    elif delta.text:
                        yield chunk({"content": delta.text}, None)
                    delta = await anext(deltas, None)
            except DistillError as exc:  # after the 200: the stream carries the error
                yield f"data: {json.dumps(json.loads(_from_error(exc).body))}\n\n"
            finally:
                await deltas.aclose()
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})


class _Server(uvicorn.Server):
    def capture_signals(self) -> AbstractContextManager[None]:
        # The process's signals belong to services.common.server.serve, which stops this
        # server in the router's on_shutdown.
        return nullcontext()


def _usage(answer: Answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


def _served_headers(answer: Answer) -> dict[str, str]:
    served = answer.served_by
    return {"x-distill-alias-version": str(served.version),
            "x-distill-target-model": served.model,
            "x-distill-cost-usd": f"{answer.cost_usd:.8f}"}


def _completion(call: ChatCall, answer: Answer) -> dict[str, Any]:
    served = answer.served_by
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": call.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.content},
                     "finish_reason": answer.finish_reason, "logprobs": None}],
        "usage": _usage(answer),
        # Who served it, as on the gRPC answer (clients ignore fields they do not know).
        "distill": {"alias": served.alias, "version": served.version,
                    "kind": served.kind_name, "model": served.model,
                    "cost_usd": answer.cost_usd, "latency_seconds": answer.latency_seconds},
    }


