"""Where a model call may go, and which of this server's API keys may go with it.

A request names its teacher or judge; without these rules it could also name the endpoint and
the server variable holding the key, and so have any of the server's secrets sent to a server
of its choosing, or have the service fetch cluster-internal URLs and echo their error bodies.

- The server's configuration names the providers it holds keys for: name -> (protocol, base
  URL, key variable). `ModelSpec.endpoint` picks one by name; a spec without endpoint or base_url
  gets the one named like its protocol ("openai", "anthropic").
- A spec's own `base_url` on a configured endpoint's origin is that endpoint (same key). Any
  other base_url must be on a host in `allowed_base_url_hosts`, gets no key at all, and its
  addresses, after DNS resolution, must pass `address_refusal` (link-local and cloud metadata
  always refused, private ranges and loopback only when allowed), before any connection; its
  connections then go to exactly those addresses, never to a second lookup's (pinning.py).
- Upstream error bodies are echoed only from configured endpoints (`ModelConfig.configured`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from services.common import errors

if TYPE_CHECKING:
    from services.common.providers.spec import ModelConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# Cloud metadata services: AWS/GCP/Azure/OpenStack (link-local anyway) and AWS's IPv6 one,
# which sits in the private fd00::/8 range and so needs naming.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2"))


class ProviderEndpoint(BaseModel):
    """One configured provider: its wire protocol, URL ("" = the SDK's public API) and the
    environment variable that holds its key on this server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["openai", "anthropic"]
    base_url: str = ""
    api_key_env: str


DEFAULT_ENDPOINTS: dict[str, ProviderEndpoint] = {
    "openai": ProviderEndpoint(provider="openai", api_key_env="OPENAI_API_KEY"),
    "anthropic": ProviderEndpoint(provider="anthropic", api_key_env="ANTHROPIC_API_KEY"),
}


@dataclass(frozen=True)
class EndpointPolicy:
    endpoints: Mapping[str, ProviderEndpoint] = field(
        default_factory=lambda: dict(DEFAULT_ENDPOINTS))
    # Hosts (names or IP literals, compared case-insensitively) a spec's base_url may name.
    allowed_base_url_hosts: frozenset[str] = frozenset()
    allow_private_addresses: bool = False
    allow_loopback_addresses: bool = False


def bind_endpoint(config: ModelConfig, policy: EndpointPolicy, *, field: str) -> ModelConfig:
    """The config with its endpoint decided: base_url and api_key_env from the configuration
    (`configured=True`), or a spec base_url on an allowed host with no key. No network."""
    if config.provider == "local":
        return config
    if config.endpoint:
        endpoint = policy.endpoints.get(config.endpoint)
        if endpoint is None:
            raise errors.InvalidArgument(
                f"{field}.endpoint: {config.endpoint!r} is not configured on this server "
                f"(configured: {', '.join(sorted(policy.endpoints)) or 'none'})")
        if config.base_url:
            raise errors.InvalidArgument(
                f"{field}.base_url: set either endpoint or base_url, not both")
        return _configured(config, config.endpoint, endpoint, field)
    if not config.base_url:
        endpoint = policy.endpoints.get(config.provider)
        if endpoint is None or endpoint.provider != config.provider:
            raise errors.PermissionDenied(
                f"{field}.endpoint: this server has no {config.provider!r} endpoint configured; "
                f"name one of: {', '.join(sorted(policy.endpoints)) or 'none'}")
        return _configured(config, config.provider, endpoint, field)
    origin = _origin(config.base_url)
    for name, endpoint in policy.endpoints.items():
        if (endpoint.base_url and endpoint.provider == config.provider
                and _origin(endpoint.base_url) == origin):
            return _configured(replace(config, base_url=""), name, endpoint, field)
    host = origin[1]
    if host not in policy.allowed_base_url_hosts:
        raise errors.PermissionDenied(
            f"{field}.base_url: host {host!r} is not on this server's allow-list "
            "(allowed_base_url_hosts); name a configured endpoint in "
            f"{field}.endpoint instead")
    if config.api_key_env:
        raise errors.PermissionDenied(
            f"{field}.api_key_env: this server holds no key for {host!r}; only a configured "
            f"endpoint ({field}.endpoint) is called with one of its keys")
    return replace(config, configured=False)


def _configured(config: ModelConfig, name: str, endpoint: ProviderEndpoint,
                field: str) -> ModelConfig:
    if endpoint.provider != config.provider:
        raise errors.InvalidArgument(
            f"{field}.provider: endpoint {name!r} speaks {endpoint.provider}, "
            f"not {config.provider}")
    if config.api_key_env and config.api_key_env != endpoint.api_key_env:
        raise errors.PermissionDenied(
            f"{field}.api_key_env: {config.api_key_env!r} is not the key configured for "
            f"endpoint {name!r} on this server; leave it empty")
    return replace(config, endpoint=name, base_url=endpoint.base_url,
                   api_key_env=endpoint.api_key_env, configured=True)


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise errors.InvalidArgument(f"base_url: bad port in {url!r}") from None
    return parts.scheme.lower(), host, port


def address_refusal(address: IPAddress, policy: EndpointPolicy) -> str | None:
    """Why a model call may not connect to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "link-local"
    if address.is_loopback:
        return None if policy.allow_loopback_addresses else "loopback"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "not a unicast address"
    if not address.is_global:
        return None if policy.allow_private_addresses else "a private address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (what a connection could end up using)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise errors.FailedPrecondition(f"cannot resolve {host!r}: {exc.strerror}") from None
    return [str(info[4][0]) for info in infos]


def check_addresses(config: ModelConfig, policy: EndpointPolicy, *, field: str,
                    resolve: Resolver | None = None) -> tuple[str, ...]:
    """PERMISSION_DENIED unless every address a spec's own base_url resolves to is allowed;
    returns those addresses, the only ones its connections may use (pinning.py). Configured
    endpoints are the operator's choice and are not checked: ()."""
    if config.provider == "local" or config.configured or not config.base_url:
        return ()
    _, host, port = _origin(config.base_url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    addresses = [literal] if literal is not None else [
        ipaddress.ip_address(a.split("%", 1)[0]) for a in (resolve or system_resolver)(host, port)]
    for address in addresses:
        if (why := address_refusal(address, policy)) is not None:
            raise errors.PermissionDenied(
                f"{field}.base_url: {host!r} resolves to {address}, {why}; model calls "
                "do not go there")
    return tuple(dict.fromkeys(str(a) for a in addresses))


def authorize(config: ModelConfig, policy: EndpointPolicy, *, field: str,
              resolve: Resolver | None = None) -> ModelConfig:
    """bind_endpoint, then check_addresses: what the gateway's preflight and the services that
    call models both run before any connection. A spec's own base_url comes back with the
    addresses it was checked at (`pinned_addresses`), which its connections then use."""
    bound = bind_endpoint(config, policy, field=field)
    addresses = check_addresses(bound, policy, field=field, resolve=resolve)
    return replace(bound, pinned_addresses=addresses) if addresses else bound
