"""Who is calling the router, on its OpenAI HTTP API and its gRPC service: a bearer key → project.

With the internal token (DISTILL_INTERNAL_TOKEN) the router serves every project: it asks the
gateway which project a key acts in (`DirectoryService.ResolveCaller`), sending the key's
SHA-256, never the key, and trusts the answer for `caller_ttl_seconds`, so a revoked key is
refused within that. A refusal is kept only `caller_failure_ttl_seconds`: a new key works almost
at once, and a flood of one wrong key costs one gateway call per that time. Both caches are
bounded. A gateway that cannot answer makes the request UNAVAILABLE (503), never a 401.

Without the internal token the router serves the default project alone: the suite's token
(`auth_token`) is the one key, and with no token set no key is needed.
"""

from __future__ import annotations

import asyncio
import hashlib

import grpc
from cachetools import TTLCache

from distill.v1 import directory_pb2, directory_pb2_grpc
from services.common.auth import Authenticator, Principal, StaticToken, principal_of
from services.common.errors import Unauthenticated, Unavailable
from services.router.settings import RouterSettings


class GatewayCallers:
    """Callers' keys resolved by the gateway (an `Authenticator` for the interceptor too)."""

    required = True  # the gateway decides whether no key is fine: "" is asked about too

    def __init__(self, directory: directory_pb2_grpc.DirectoryServiceStub, metadata: tuple,
                 settings: RouterSettings) -> None:
        self._directory = directory
        self._metadata = metadata
        # SHA-256 of a key → its principal, or → True for a key the gateway refused.
        self._known: TTLCache = TTLCache(settings.caller_cache_size, settings.caller_ttl_seconds)
        self._refused: TTLCache = TTLCache(settings.caller_cache_size,
                                           settings.caller_failure_ttl_seconds)
        self._asking: dict[str, asyncio.Future] = {}

    async def authenticate(self, key: str) -> Principal | None:
        digest = hashlib.sha256(key.encode()).hexdigest() if key else ""
        if (principal := self._known.get(digest)) is not None:
            return principal
        if self._refused.get(digest):
            return None
        asking = self._asking.get(digest)
        if asking is None:  # one gateway call per key, however many requests wait for it
            asking = asyncio.ensure_future(self._ask(digest))
            self._asking[digest] = asking
            asking.add_done_callback(lambda _: self._asking.pop(digest, None))
        return await asyncio.shield(asking)

    async def _ask(self, digest: str) -> Principal | None:
        try:
            # wait_for_ready: a gateway starting (or restarting) is waited for, not a 503.
            reply = await self._directory.ResolveCaller(
                directory_pb2.ResolveCallerRequest(key_sha256=digest),
                metadata=self._metadata, timeout=30, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                self._refused[digest] = True
                return None
            # Not the caller's fault (the gateway down, or refusing the router's own token).
            raise Unavailable(f"gateway: checking the API key failed: {exc.code().name}: "
                              f"{exc.details()}") from None
        principal = Principal(reply.project)
        self._known[digest] = principal
        return principal


def callers(settings: RouterSettings, directory: directory_pb2_grpc.DirectoryServiceStub,
            metadata: tuple) -> Authenticator:
    """Who may call this router: every project's keys through the gateway with the internal
    token, else the suite's single token (or, with none set, anyone)."""
    if settings.internal_token is not None:
        return GatewayCallers(directory, metadata, settings)
    return StaticToken(settings.auth_token.get_secret_value() if settings.auth_token else None)


async def caller_project(authorization: str | None, authenticator: Authenticator) -> str:
    """The project whose aliases an HTTP caller may use; Unauthenticated for no or a wrong key
    (the gRPC interceptor decides the same way, with the same authenticator)."""
    principal = await principal_of(authenticator, authorization or "")
    if principal is None:
        raise Unauthenticated("missing, wrong or revoked API key (Authorization: Bearer KEY)")
    return principal.project
