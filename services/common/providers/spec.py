"""From a protobuf `ModelSpec` to a checked `ModelConfig`, and from that to a provider.

All validation of a model spec lives here, so the generator, the judge and the gateway's
preflight refuse the same specs with the same messages (which name the field).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from distill.v1 import common_pb2
from services.common import errors
from services.common.models import (
    SMOLLM2_GGUF_FILE,
    ModelInfo,
    Price,
    PriceOverrides,
    get_model,
    packaged_smollm2_gguf,
    price_for,
)
from services.common.providers.anthropic_provider import AnthropicProvider
from services.common.providers.base import ModelProvider
from services.common.providers.call_processes import CallProcesses
from services.common.providers.endpoints import EndpointPolicy, authorize
from services.common.providers.local import LocalProvider
from services.common.providers.openai_provider import NMode, OpenAIProvider

PROVIDERS = {
    common_pb2.PROVIDER_OPENAI: "openai",
    common_pb2.PROVIDER_ANTHROPIC: "anthropic",
    common_pb2.PROVIDER_LOCAL: "local",
}
DEFAULT_MAX_TOKENS = 512
DEFAULT_TIMEOUT_SECONDS = 60.0
LOCAL_DEFAULT = "smollm2-135m-gguf"


@dataclass(frozen=True)
class ModelConfig:
    provider: str  # "openai" | "anthropic" | "local"
    # What the provider is asked for: an API model id, or for "local" a GGUF path.
    model: str
    base_url: str
    api_key_env: str
    temperature: float
    max_tokens: int
    top_p: float | None
    timeout_seconds: float
    price: Price
    # A configured endpoint's name (ModelSpec.endpoint, or set by bind_endpoint).
    endpoint: str = ""
    # Set by bind_endpoint: base_url and api_key_env come from this server's configuration, so
    # the key may be sent and the endpoint's error bodies may be echoed.
    configured: bool = False
    # Set by authorize for a spec's own base_url: the addresses its host was checked at, the
    # only ones its connections use (pinning.py).
    pinned_addresses: tuple[str, ...] = ()


def resolve_model_spec(
    spec: common_pb2.ModelSpec,
    *,
    field: str,
    default_temperature: float,
    price_overrides: PriceOverrides | None = None,
) -> ModelConfig:
    """Checks a spec and applies defaults; InvalidArgument/NotFound name `field`.sub-field."""
    name = spec.model.strip()
    entry = _registry(name) if name else None
    provider = PROVIDERS.get(spec.provider)
    if provider is None:
        if spec.provider != common_pb2.PROVIDER_UNSPECIFIED:
            raise errors.InvalidArgument(f"{field}.provider: unknown value {spec.provider}")
        if entry is None or entry.provider not in ("openai", "anthropic", "local"):
            raise errors.InvalidArgument(
                f"{field}.provider: unset, and {field}.model {name!r} is not a known teacher; "
                "set the provider (PROVIDER_OPENAI, PROVIDER_ANTHROPIC, PROVIDER_LOCAL)"
            )
        provider = entry.provider

    if provider == "local":
        model = _local_model_path(name, field)
        price_name = LOCAL_DEFAULT if Path(model).name == SMOLLM2_GGUF_FILE else model
    else:
        if not name:
            raise errors.InvalidArgument(f"{field}.model: required for provider {provider}")
        # A shortcut ("claude-sonnet") becomes the provider's id; other names pass through.
        model = entry.model_id if entry is not None and entry.provider == provider else name
        price_name = name

    temperature = spec.temperature if spec.HasField("temperature") else default_temperature
    if not (math.isfinite(temperature) and 0 <= temperature <= 2):
        raise errors.InvalidArgument(f"{field}.temperature: must be within 0..2, got {temperature}")
    max_tokens = spec.max_tokens if spec.HasField("max_tokens") else DEFAULT_MAX_TOKENS
    if not 1 <= max_tokens <= 131072:
        raise errors.InvalidArgument(f"{field}.max_tokens: must be 1..131072, got {max_tokens}")
    top_p = spec.top_p if spec.HasField("top_p") else None
    if top_p is not None and not (0 < top_p <= 1):
        raise errors.InvalidArgument(f"{field}.top_p: must be in (0, 1], got {top_p}")
    timeout = spec.timeout_seconds if spec.HasField("timeout_seconds") else DEFAULT_TIMEOUT_SECONDS
    if not (math.isfinite(timeout) and 0 < timeout <= 3600):
        raise errors.InvalidArgument(
            f"{field}.timeout_seconds: must be in (0, 3600], got {timeout}"
        )
    base_url = spec.base_url.strip()
    if base_url and not re.match(r"^https?://[^\s/]+", base_url):
        raise errors.InvalidArgument(f"{field}.base_url: must be an http(s) URL, got {base_url!r}")
    if base_url and provider == "local":
        raise errors.InvalidArgument(f"{field}.base_url: not used by PROVIDER_LOCAL")
    key_env = spec.api_key_env.strip()
    endpoint = spec.endpoint.strip()
    if endpoint and provider == "local":
        raise errors.InvalidArgument(f"{field}.endpoint: not used by PROVIDER_LOCAL")

    price = price_for(price_name, price_overrides)
    for attr in ("input_usd_per_mtok", "output_usd_per_mtok"):
        if spec.HasField(attr):
            value = getattr(spec, attr)
            if not (math.isfinite(value) and value >= 0):
                raise errors.InvalidArgument(f"{field}.{attr}: must be >= 0, got {value}")
            price = replace(price, **{attr: value, "source": "override"})
    return ModelConfig(provider, model, base_url, key_env, temperature, max_tokens, top_p,
                       timeout, price, endpoint)


def _registry(name: str) -> ModelInfo | None:
    try:
        return get_model(name)
    except errors.NotFound:
        return None


def _local_model_path(name: str, field: str) -> str:
    if not name or name.casefold() in (LOCAL_DEFAULT, SMOLLM2_GGUF_FILE.casefold()):
        return str(packaged_smollm2_gguf())
    path = Path(name).expanduser()
    if path.suffix.lower() != ".gguf":
        raise errors.InvalidArgument(
            f"{field}.model: PROVIDER_LOCAL takes {LOCAL_DEFAULT!r} or a path to a .gguf file, "
            f"got {name!r}"
        )
    if not path.is_file():
        raise errors.NotFound(f"{field}.model: no GGUF file at {path}")
    return str(path.resolve())


def read_api_key(
    config: ModelConfig,
    *,
    field: str,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The key of the configured endpoint `config` is bound to (endpoints.authorize); "" for
    local models and for a spec's own base_url, which never get one of this server's keys."""
    if not config.configured or not config.api_key_env:
        return ""
    env = os.environ if environ is None else environ
    key = env.get(config.api_key_env, "")
    if not key:
        raise errors.FailedPrecondition(
            f"{field}.api_key_env: environment variable {config.api_key_env} is not set on "
            "this service"
        )
    return key


def open_provider(
    config: ModelConfig,
    *,
    field: str,
    policy: EndpointPolicy,
    environ: Mapping[str, str] | None = None,
    openai_n: NMode = "auto",
    local_n_ctx: int = 2048,
    processes: CallProcesses | None = None,
) -> ModelProvider:
    """A provider for `config` once `policy` allows its endpoint, the API key read here and
    held only inside the SDK client. With `processes`, an API teacher's calls run in those
    processes (the local one stays)."""
    config = authorize(config, policy, field=field)
    key = read_api_key(config, field=field, environ=environ)
    if processes is not None and config.provider != "local":
        return processes.provider(config, key, openai_n=openai_n)
    return build_provider(config, key, openai_n=openai_n, local_n_ctx=local_n_ctx)


def build_provider(config: ModelConfig, key: str, *, openai_n: NMode = "auto",
                   local_n_ctx: int = 2048) -> ModelProvider:
    """The in-process provider for a checked config and its key (open_provider reads the key)."""
    if config.provider != "local" and config.base_url and not config.configured \
            and not config.pinned_addresses:
        # Only authorize's output is built: a spec's base_url is dialed at checked addresses.
        raise RuntimeError(f"{config.base_url}: not checked by the endpoint policy")
    if config.provider == "openai":
        # OpenAI-compatible local servers need no key, but the SDK insists on one.
        return OpenAIProvider(
            config.model,
            api_key=key or "no-key",
            base_url=config.base_url,
            pinned=config.pinned_addresses,
            timeout_seconds=config.timeout_seconds,
            n_mode=openai_n,
            echo_errors=config.configured,
        )
    if config.provider == "anthropic":
        return AnthropicProvider(
            config.model,
            api_key=key or "no-key",
            base_url=config.base_url,
            pinned=config.pinned_addresses,
            timeout_seconds=config.timeout_seconds,
            echo_errors=config.configured,
        )
    return LocalProvider(config.model, n_ctx=local_n_ctx)
