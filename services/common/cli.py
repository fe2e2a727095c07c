"""`python -m services.<name> --host H --port P`: the entry point shared by all services."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from services.common.errors import StartupRefused
from services.common.logs import configure_logging
from services.common.server import Service, serve
from services.common.settings import ServiceSettings


def run_service(
    settings_cls: type[ServiceSettings],
    build: Callable[[ServiceSettings], Sequence[Service]],
    argv: Sequence[str] | None = None,
) -> None:
    name = settings_cls.service_name
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{name}",
        description=f"distill {name} service (settings also from DISTILL_{name.upper()}_* env)",
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help=f"port to bind (default {settings_cls.default_port}; 0: any free)"
    )
    parser.add_argument(
        "--insecure", action="store_true", default=None,
        help="serve a stage service on a non-loopback address without DISTILL_INTERNAL_TOKEN")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = settings_cls(**overrides)
    except ValidationError as exc:
        parser.exit(2, f"invalid settings for {name}:\n{exc}\n")
    configure_logging(settings.log_level, service=name)
    try:
        asyncio.run(serve(settings, build))
    except StartupRefused as exc:
        parser.exit(1, f"{name} refused to start: {exc}\n")
