"""One server interceptor: request id, bearer-key auth, error → status mapping, an RPC log line.

grpc.aio interceptors see only the method name, so the work happens in a wrapper around the
method's behaviour, where the metadata and the context are available. A request body that does
not parse as its message is INVALID_ARGUMENT there too (grpc itself answers UNKNOWN or INTERNAL).
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health

from services.common.auth import Authenticator, StaticToken, principal_of, principal_var
from services.common.errors import ANSWERED_CODES, DistillError, InvalidArgument
from services.common.logs import request_id_var

log = logging.getLogger("distill.rpc")

REQUEST_ID_KEY = "x-request-id"
# Probes (Kubernetes, compose, load balancers) carry no token.
_NO_AUTH_PREFIXES = (f"/{health.SERVICE_NAME}/",)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator | None = None) -> None:
        self._auth = authenticator or StaticToken(None)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        needs_auth = not method.startswith(_NO_AUTH_PREFIXES)
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, method, needs_auth, True),
                _lenient(handler.request_deserializer),
                handler.response_serializer,
            )
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, needs_auth, False),
                _lenient(handler.request_deserializer),
                handler.response_serializer,
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method, needs_auth, True),
                _lenient(handler.request_deserializer),
                handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._wrap_unary(handler.unary_unary, method, needs_auth, False),
            _lenient(handler.request_deserializer),
            handler.response_serializer,
        )

    def _wrap_unary(self, behavior: Callable, method: str, needs_auth: bool,
                    streamed: bool) -> Callable:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = self._begin(context)
            try:
                await self._authenticate(context, needs_auth)
                result = behavior(_decoded(request, streamed), context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except BaseException as exc:  # noqa: BLE001 - mapped, logged and re-raised as status
                await _abort_for(exc, context, method)
            finally:
                _log_rpc(method, context, started)

        return wrapper

    def _wrap_stream(self, behavior: Callable, method: str, needs_auth: bool,
                     streamed: bool) -> Callable:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = self._begin(context)
            result = None
            try:
                await self._authenticate(context, needs_auth)
                result = behavior(_decoded(request, streamed), context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        yield response
                elif inspect.isawaitable(result):  # a coroutine that uses context.write()
                    await result
                elif result is not None:
                    for response in result:
                        yield response
            except BaseException as exc:  # noqa: BLE001 - mapped, logged and re-raised as status
                await _abort_for(exc, context, method)
            finally:
                if inspect.isasyncgen(result):
                    # A client that went away must stop the work now (its finally blocks cancel
                    # teacher calls, training, ...), not whenever the generator is collected.
                    await result.aclose()
                _log_rpc(method, context, started)

        return wrapper

    @staticmethod
    def _begin(context: grpc.aio.ServicerContext) -> float:
        metadata = dict(context.invocation_metadata() or ())
        request_id = metadata.get(REQUEST_ID_KEY) or uuid.uuid4().hex
        request_id_var.set(request_id)
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        return time.perf_counter()

    async def _authenticate(self, context: grpc.aio.ServicerContext, needs_auth: bool) -> None:
        """Sets `principal_var` for the servicer; without a known key, UNAUTHENTICATED where a
        key is required (where none is, a known key still names its principal: the internal
        token on a gateway that needs no user key)."""
        if not needs_auth:
            return
        metadata = dict(context.invocation_metadata() or ())
        principal = await principal_of(self._auth, metadata.get("authorization", ""))
        if principal is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing, wrong or revoked bearer key (authorization)")
        principal_var.set(principal)


class _Undecodable:
    """A request message whose bytes did not parse; the wrapper refuses it."""

    def __init__(self, error: DecodeError) -> None:
        self.error = InvalidArgument(f"request: not a valid message ({error})")


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return _Undecodable(exc)

    return parse


def _decoded(request: Any, streamed: bool) -> Any:
    """The request (or request stream) with an undecodable message raised as InvalidArgument."""
    if not streamed:
        if isinstance(request, _Undecodable):
            raise request.error
        return request

    async def messages():
        async for message in request:
            if isinstance(message, _Undecodable):
                raise message.error
            yield message

    return messages()


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    """Turns an exception escaping a servicer into its error type's status; never UNKNOWN."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc  # context.abort() already set the status
    if isinstance(exc, DistillError) and exc.code in ANSWERED_CODES:
        await context.abort(exc.code, str(exc))  # (a bare DistillError is a bug, logged below)
    if isinstance(exc, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    if not isinstance(exc, Exception):
        raise exc  # cancellation and interpreter exits pass through untouched
    log.error("unhandled error in %s", method, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL, f"internal error (request id {request_id_var.get()})"
    )


def _log_rpc(method: str, context: grpc.aio.ServicerContext, started: float) -> None:
    code = context.code()
    log.info(
        "rpc",
        extra={
            "method": method,
            "code": (code or grpc.StatusCode.OK).name,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
