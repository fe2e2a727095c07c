"""The channels one service opens to another: plaintext, or TLS that trusts one CA."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


@dataclass(frozen=True)
class ChannelSecurity:
    """No `ca_file`: plaintext. With one: TLS, and the peer's certificate must be signed by that
    CA and name the host dialled, or `server_name` when set (a trainer replica is dialled at the
    IP address its Service name resolved to, and its certificate names the Service)."""

    ca_file: Path | None = None
    server_name: str = ""

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        options = list(options)
        if self.ca_file is None:
            return grpc.aio.insecure_channel(address, options=options)
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        credentials = grpc.ssl_channel_credentials(root_certificates=self.ca_file.read_bytes())
        return grpc.aio.secure_channel(address, credentials, options=options)


PLAINTEXT = ChannelSecurity()
