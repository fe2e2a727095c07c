"""The router follows alias changes as they happen: the gateway's WatchAliases stream.

A change to an alias the router holds makes it read the alias again (GetProjectAlias: the whole
record, history included) and warm the new version before it takes traffic (targets.refresh);
aliases the router does not hold are read on their first request, as before. A lost stream is
resumed after the last sequence applied; the records' TTL (`alias_ttl_seconds`) stays as the
fallback. With the internal token the stream carries every project's aliases.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from distill.v1 import gateway_pb2, gateway_pb2_grpc
from services.common.auth import DEFAULT_PROJECT
from services.common.errors import DistillError
from services.router.targets import AliasTargets

log = logging.getLogger("distill.router")


async def follow(gateway: gateway_pb2_grpc.GatewayServiceStub, metadata: tuple,
                 targets: AliasTargets, reconnect_seconds: float) -> None:
    """Runs until cancelled."""
    resume = 0
    while True:
        try:
            stream = gateway.WatchAliases(gateway_pb2.WatchAliasesRequest(resume_after=resume),
                                          metadata=metadata)
            async for message in stream:
                states = (message.snapshot.aliases if message.HasField("snapshot")
                          else [message.change])
                for state in states:
                    await _apply(targets, state)
                resume = message.sequence
        except grpc.aio.AioRpcError as exc:
            log.info("alias feed lost (%s): resuming after %d", exc.code().name, resume)
        await asyncio.sleep(reconnect_seconds)  # the gateway restarting, or not up yet


async def _apply(targets: AliasTargets, state: gateway_pb2.AliasState) -> None:
    try:
        await targets.pushed(state.project or DEFAULT_PROJECT, state.name, state.version)
    except DistillError as exc:  # one alias that cannot be read or warmed stops nothing else
        log.warning("alias %s version %d: %s", state.name, state.version, exc)
