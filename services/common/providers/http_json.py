"""The API providers' HTTP: JSON POSTed over one aiohttp session per provider, every failure
mapped onto the provider interface's two exceptions (base.py).

The official SDKs (openai, anthropic) made these calls before. Through them a call cost about
three times the CPU of the same POST on aiohttp (1.45 ms against 0.45 ms per call on the 2-core
development box: their request-option models, header handling and an httpx2 layer over the same
aiohttp transport), and that was half of the router's CPU for a teacher alias's answer
(benchmarks/router_cpu.py). What the providers used of them was a URL, a header or two and their
error classes, which live here, once for both wires.

As with the SDKs' clients: no redirects are followed (a base_url's server could otherwise send
the call somewhere the address policy in endpoints.py never checked), the proxy and CA settings
of the environment hold (HTTP(S)_PROXY, NO_PROXY, SSL_CERT_FILE), and certifi's CA bundle is
trusted as well as the system's. The proxy is decided once per poster (its URL is fixed):
aiohttp's `trust_env` reads the environment again on every request, which cost 0.7 ms a call.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from services.common.providers.base import (
    Redactor,
    RetryableProviderError,
    fatal_error,
    is_retryable_status,
    parse_retry_after,
)
from services.common.providers.pinning import PinnedResolver, Pins


@dataclass(frozen=True)
class HttpRefusal:
    """A non-2xx answer: its status, its body (parsed JSON, else the text) and headers."""

    status: int
    body: Any
    headers: Mapping[str, str]

    def error(self) -> dict[str, Any]:
        """The body's `error` object (both wires nest it so), else the body when an object."""
        body = self.body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"]
        return body if isinstance(body, dict) else {}

    def message(self, redact: Redactor, echo: bool) -> str:
        """What the upstream says went wrong (at most 1000 characters, redacted), when `echo`:
        from a configured endpoint. From any other only the status is told, so a spec's
        base_url cannot read internal servers' error pages back through us."""
        if not echo:
            return "(its body is not shown: the endpoint is not one configured on this server)"
        message = self.error().get("message")
        if not (isinstance(message, str) and message):
            message = (self.body if isinstance(self.body, str) else "").strip() or "no message"
        return redact(message[:1000])

    def exception(self, where: str, message: str) -> Exception:
        """Retryable (429, 5xx, ...) with the answer's Retry-After, else the DistillError of
        its status."""
        if is_retryable_status(self.status):
            return RetryableProviderError(f"{where} answered HTTP {self.status}: {message}",
                                          status=self.status,
                                          retry_after=parse_retry_after(self.headers))
        return fatal_error(where, self.status, message)


class JsonPoster:
    """POSTs JSON bodies to one URL and returns the parsed JSON reply.

    Timeouts, refused or broken connections and malformed bodies raise RetryableProviderError;
    a non-2xx answer raises what `refused` makes of it. Nothing raised carries a secret
    `redact` knows."""

    def __init__(self, url: str, headers: Mapping[str, str], *, timeout_seconds: float,
                 where: str, redact: Redactor,
                 refused: Callable[[HttpRefusal], Exception], pins: Pins | None = None) -> None:
        """`pins`: a spec's own base_url's checked addresses, the only ones dialled (no proxy:
        a proxy would resolve the name itself)."""
        self.url = url
        self._headers = {"Content-Type": "application/json", **headers}
        self._timeout_seconds = timeout_seconds
        self._where = where
        self._redact = redact
        self._refused = refused
        self._pins = pins
        self._proxy = None if pins else env_proxy(url)
        self._session: Any = None  # aiohttp.ClientSession, opened on the first call's loop
        self._timeout: Any = None

    async def post(self, body: Mapping[str, Any]) -> Any:
        import aiohttp

        if self._session is None:
            self._open()
        try:
            async with self._session.post(self.url, data=json.dumps(body).encode(),
                                          headers=self._headers, allow_redirects=False,
                                          timeout=self._timeout, proxy=self._proxy) as response:
                status, headers, data = response.status, response.headers, await response.read()
        except TimeoutError:  # aiohttp's connect and read timeouts are TimeoutErrors too
            raise RetryableProviderError(
                f"{self._where} timed out (no answer within {self._timeout_seconds:g} s)"
            ) from None
        except aiohttp.ClientError as exc:  # refused, reset, a body cut short
            raise RetryableProviderError(
                f"{self._where}: connection failed ({self._redact(str(exc) or type(exc).__name__)})"
            ) from None
        if not 200 <= status < 300:
            raise self._refused(HttpRefusal(status, _parsed(data), headers))
        try:
            return json.loads(data)
        except ValueError as exc:  # a 200 whose body is not JSON (truncated), or not UTF-8
            raise RetryableProviderError(
                f"{self._where} sent a malformed body ({type(exc).__name__})") from None

    def _open(self) -> None:
        import aiohttp

        # Each wait (a connection, a read) gets the spec's timeout_seconds, as with the SDKs.
        seconds = self._timeout_seconds
        self._timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
        # No connection limit here: the client's RateLimiter bounds the calls in flight.
        resolver = PinnedResolver(self._pins) if self._pins else None
        connector = aiohttp.TCPConnector(limit=0, ssl=_tls_context(), resolver=resolver)
        self._session = aiohttp.ClientSession(connector=connector)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP_PROXY, HTTPS_PROXY; not for a host
    NO_PROXY names), or None."""
    parts = urlsplit(url)
    proxy = getproxies().get(parts.scheme)
    if not proxy or proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _parsed(data: bytes) -> Any:
    text = data.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _tls_context() -> ssl.SSLContext:
    """The system's CAs (and SSL_CERT_FILE / SSL_CERT_DIR), plus certifi's bundle, which the
    SDKs trusted."""
    import certifi

    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    return context
