"""Who is calling the OpenAI HTTP API: one function, so that project API keys replace it alone.

Today the router takes the suite's bearer token (settings `auth_token`, the same check the gRPC
interceptor makes) and every caller belongs to the default project; with no token set, no key
is needed (as on the gRPC side).
"""

from __future__ import annotations

from services.common.auth import DEFAULT_PROJECT, same_secret
from services.common.errors import Unauthenticated
from services.router.settings import RouterSettings


def caller_project(authorization: str | None, settings: RouterSettings) -> str:
    """The project whose aliases the caller may use; Unauthenticated for no or a wrong key."""
    if settings.auth_token is None:
        return DEFAULT_PROJECT
    scheme, _, key = (authorization or "").partition(" ")
    expected = settings.auth_token.get_secret_value()
    if scheme.lower() != "bearer" or not same_secret(key.strip(), expected):
        raise Unauthenticated("missing or wrong API key (Authorization: Bearer KEY)")
    return DEFAULT_PROJECT
