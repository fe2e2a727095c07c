"""HTTP clients that connect only to the addresses `endpoints.check_addresses` allowed.

A spec's own base_url is checked after DNS resolution; a client that resolved the name again
when it connects could be answered differently the second time (DNS rebinding: a public address
to the check, 169.254.169.254 or 10.x to the connection). These clients never ask DNS: the
name's checked addresses are handed to the HTTP stack's own resolution seam, and any other name
is refused. The URL keeps its host, so the Host header, TLS SNI and certificate verification are
still the name's.

- the API providers (openai, anthropic: JSON over aiohttp, http_json.py): an aiohttp resolver
  (`aiohttp.abc.AbstractResolver`, the connector's documented DNS hook);
- the router's upstream calls (httpx): an httpcore network backend that dials the checked
  address where the pool asks for the name.

Proxies from the environment are off on these clients: a proxy would resolve the name itself.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult


@dataclass(frozen=True)
class Pins:
    """A base_url's host and the addresses it was checked at (endpoints.check_addresses)."""

    host: str
    addresses: tuple[str, ...]

    @classmethod
    def of(cls, base_url: str, addresses: Iterable[str]) -> Pins:
        return cls((urlsplit(base_url).hostname or "").lower(), tuple(addresses))

    def lookup(self, host: str) -> tuple[str, ...]:
        """The addresses to dial for `host`: the checked ones, or an error for any other name
        (a redirect or a proxy setting could otherwise name one nobody checked)."""
        if host.lower().rstrip(".") != self.host.rstrip(".") or not self.addresses:
            raise OSError(f"{host!r} was not checked by the endpoint policy; no connection")
        return self.addresses


class PinnedResolver(AbstractResolver):
    def __init__(self, pins: Pins) -> None:
        self._pins = pins

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=address, port=port,
                              family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)
                for address in self._pins.lookup(host)]

    async def close(self) -> None:
        return None


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, dialing the checked addresses in turn for the pinned name
    (TCP only: the base class refuses Unix sockets)."""

    def __init__(self, pins: Pins) -> None:
        self._pins = pins
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = self._pins.lookup(host)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address,
                                                     socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_httpx_client(pins: Pins, *, max_connections: int = 64) -> httpx.AsyncClient:
    """An httpx client, no redirects and no proxies, dialing only `pins`."""
    limits = httpx.Limits(max_connections=max_connections)
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    # httpx's transport takes no network backend; its pool (httpcore) does. The transport is
    # otherwise httpx's own (request/response mapping, errors).
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("httpx's transport no longer holds an httpcore pool to pin")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=PinnedBackend(pins))
    return httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False)
