"""Who is calling: the bearer key resolved to a principal (a project, or the admin).

The interceptor (services/common/interceptors.py) asks the server's `Authenticator` about the
bearer key of every RPC but health and puts the answer in `principal_var` for the servicer.
Stage services use `StaticToken` (one shared secret, no projects); the gateway resolves project
API keys (services/gateway/api_keys.py); the router asks the gateway (services/router/auth.py).
"""

from __future__ import annotations

import hmac
import inspect
import re
from collections.abc import Awaitable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from services.common.errors import InvalidArgument

# The project of a one-user install: its single token (or no token on loopback) acts here, and
# its datasets, cache entries and aliases keep the layout they had before projects existed.
DEFAULT_PROJECT = "default"
PROJECT_NAME = re.compile(r"[a-z][a-z0-9-]{0,38}[a-z0-9]")


@dataclass(frozen=True)
class Principal:
    project: str
    admin: bool = False
    # The internal token: the gateway's own services (the stages, the router), never a user.
    internal: bool = False


# Callers of a server that needs no key act in the default project.
principal_var: ContextVar[Principal] = ContextVar(
    "principal", default=Principal(DEFAULT_PROJECT))  # noqa: B039 - frozen: never mutated


def current_principal() -> Principal:
    return principal_var.get()


def project_name(value: str, field: str = "project") -> str:
    if not PROJECT_NAME.fullmatch(value):
        raise InvalidArgument(f"{field}: projects are 2-40 lower-case letters, digits and dashes, "
                              f"starting with a letter, got {value[:80]!r}")
    return value


class Authenticator(Protocol):
    # False: a caller without a known key is the default project.
    required: bool

    def authenticate(self, key: str) -> Principal | Awaitable[Principal | None] | None:
        """The principal `key` ("" when the caller sent none) belongs to, or None for a key
        nobody holds; an authenticator that has to ask another service returns an awaitable."""


async def principal_of(authenticator: Authenticator, authorization: str) -> Principal | None:
    """The principal an `authorization` value ("Bearer KEY", gRPC metadata or an HTTP header)
    names; None for an unknown key, or for none where one is required."""
    scheme, _, key = authorization.partition(" ")
    found = authenticator.authenticate(key.strip() if scheme.lower() == "bearer" else "")
    principal = await found if inspect.isawaitable(found) else found
    if principal is None and not authenticator.required:
        return Principal(DEFAULT_PROJECT)
    return principal


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())  # constant time


class StaticToken:
    """One shared token (or none): the stage services, and a gateway without projects."""

    def __init__(self, token: str | None) -> None:
        self._token = token
        self.required = token is not None

    def authenticate(self, key: str) -> Principal | None:
        if self._token is not None and key and same_secret(key, self._token):
            return Principal(DEFAULT_PROJECT)
        return None
