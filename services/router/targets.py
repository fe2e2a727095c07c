"""Alias → target: what `support-bot` (or `support-bot@3`) means right now.

The one place the router learns what an alias points at. Records come from the gateway, per
project (`DirectoryService.GetProjectAlias`, `ListProjectAliases`), are held by (project,
alias) and kept `alias_ttl_seconds`; `refresh(alias)` takes a record pushed by the gateway
(WatchAliases) at once. A new target is warmed (GGUF downloaded and sha256-verified, engine
started) before it replaces the old one, so requests keep going to the old version until the new
one can answer, and those in flight finish where they started.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from distill.v1 import common_pb2, directory_pb2, directory_pb2_grpc, gateway_pb2, router_pb2
from services.common import errors
from services.common.auth import DEFAULT_PROJECT
from services.common.specs.names import alias_name
from services.common.specs.routing import choose
from services.common.specs.routing import routing as routing_spec


@dataclass(frozen=True)
class Target:
    """One version of one alias, resolved."""

    alias: str
    version: int
    kind: int  # router_pb2.TargetKind
    # Who answers: the job for a student, the model id for a teacher or an upstream.
    model: str
    max_tokens_limit: int
    record: gateway_pb2.AliasTarget
    # The version's traffic rules (trace capture and redaction, ...); empty: the defaults.
    routing: gateway_pb2.AliasRouting = field(default_factory=gateway_pb2.AliasRouting)

    @property
    def gguf(self) -> common_pb2.ArtifactRef:
        return self.record.gguf


Warm = Callable[[Target], Awaitable[None]]


def split_model(model: str) -> tuple[str, int]:
    """"name" → (name, 0: the current version); "name@3" → (name, 3)."""
    name, at, version = model.partition("@")
    if at and not (version.isdigit() and int(version) >= 1):
        raise errors.InvalidArgument(
            f"model: {model!r} is not ALIAS or ALIAS@VERSION (a version is an integer >= 1)")
    try:
        alias_name(name, "model")
    except errors.InvalidArgument:
        # Anything that is not an alias name cannot be one of the caller's aliases.
        raise errors.NotFound(f"model: no alias named {model!r}") from None
    return name, int(version) if at else 0


class AliasTargets:
    def __init__(self, directory: directory_pb2_grpc.DirectoryServiceStub, *, metadata: tuple,
                 default_max_tokens: int, ttl_seconds: float, warm: Warm) -> None:
        self._directory = directory
        self._metadata = metadata
        self._default_max_tokens = default_max_tokens
        self._ttl = ttl_seconds
        self._warm = warm
        # (project, alias) -> (record, when read)
        self._records: dict[tuple[str, str], tuple[gateway_pb2.Alias, float]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def resolve(self, model: str, project: str = DEFAULT_PROJECT) -> Target:
        """The target `model` (ALIAS or ALIAS@VERSION) means for `project`; NOT_FOUND names it."""
        name, version = split_model(model)
        alias = await self._current(project, name)
        if version == 0 or version == alias.version:
            return self._target(alias.name, alias.version, alias.target, alias.routing)
        for entry in alias.history:
            if entry.version == version:
                target = self._target(alias.name, version, entry.target, entry.routing)
                await self._warm(target)
                return target
        raise errors.NotFound(
            f"model: alias {name!r} has no version {version} (versions 1..{alias.version})")

    async def refresh(self, alias: gateway_pb2.Alias, project: str = DEFAULT_PROJECT) -> None:
        """Takes a newer record: warms its target, then lets it take traffic."""
        key = (project, alias.name)
        held = self._records.get(key)
        if held is not None and held[0].version > alias.version:
            return  # an older push arrived late
        if held is None or held[0].version != alias.version:
            await self._warm(self._target(alias.name, alias.version, alias.target,
                                          alias.routing))
        self._records[key] = (alias, time.monotonic())

    async def pushed(self, project: str, name: str, version: int) -> None:
        """The gateway says alias `name` is now at `version`: a record held at an older
        version is read again and its new target warmed (unheld aliases wait for a request)."""
        held = self._records.get((project, name))
        if held is None or held[0].version >= version:
            return
        self._records[(project, name)] = (held[0], float("-inf"))  # stale: read it again
        await self._current(project, name)

    def pick(self, target: Target, user: str, rng: random.Random) -> Target:
        """Who answers this request when the version splits its traffic (routing.canary): the
        same target for the same `user` on every replica, else a fresh draw."""
        if not target.routing.canary:
            return target
        chosen = choose(routing_spec(target.routing), target.record, target.alias, user or None,
                        rng)
        if chosen is target.record:
            return target
        return self.variant(target, chosen)

    def variant(self, target: Target, record: gateway_pb2.AliasTarget) -> Target:
        """Another target answering for `target`'s alias and version: a canary, a shadow, the
        validator's fallback teacher."""
        return self._target(target.alias, target.version, record, target.routing)

    def forget(self, name: str, project: str = DEFAULT_PROJECT) -> None:
        self._records.pop((project, name), None)

    async def list(self, project: str = DEFAULT_PROJECT) -> list[gateway_pb2.Alias]:
        aliases, token = [], ""
        while True:
            page = await self._call("ListProjectAliases", directory_pb2.ListProjectAliasesRequest(
                project=project, page_token=token), "aliases")
            aliases += page.aliases
            if not (token := page.next_page_token):
                return aliases

    async def _call(self, method: str, request: object, what: str) -> object:
        try:
            # wait_for_ready: a gateway starting (or restarting) is waited for, not a 503.
            return await getattr(self._directory, method)(request, metadata=self._metadata,
                                                          timeout=30, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise errors.NotFound(f"model: no alias named {what!r}") from None
            raise errors.Unavailable(f"gateway: reading {what} failed: {exc.code().name}: "
                                     f"{exc.details()}") from None

    async def _current(self, project: str, name: str) -> gateway_pb2.Alias:
        key = (project, name)
        held = self._records.get(key)
        if held is not None and time.monotonic() - held[1] < self._ttl:
            return held[0]
        lock = self._locks.setdefault(key, asyncio.Lock())
        if held is not None and lock.locked():
            # Another request is reading (and maybe warming) a newer record: until it is ready
            # the version held keeps answering.
            return held[0]
        try:
            async with lock:  # one read per alias however many requests wait for it
                held = self._records.get(key)
                if held is not None and time.monotonic() - held[1] < self._ttl:
                    return held[0]
                try:
                    alias = (await self._call("GetProjectAlias",
                                              directory_pb2.GetProjectAliasRequest(
                                                  project=project, name=name), name)).alias
                except errors.NotFound:
                    self.forget(name, project)
                    raise
                await self.refresh(alias, project)
                return alias
        finally:
            # A lock lives only while a read is under way: callers asking for names that do not
            # exist must not grow this map. (A request arriving just as a waiter is woken may
            # read the record once more, which is harmless.)
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    def _target(self, name: str, version: int, record: gateway_pb2.AliasTarget,
                routing: gateway_pb2.AliasRouting) -> Target:
        which = record.WhichOneof("target")
        limit = record.max_tokens_limit or self._default_max_tokens
        if which == "job":
            if not record.gguf.uri:
                raise errors.FailedPrecondition(
                    f"model: alias {name!r} version {version} points at {record.job}, which "
                    "has no student GGUF to serve")
            return Target(name, version, router_pb2.TARGET_KIND_STUDENT, record.job, limit,
                          record, routing)
        if which == "teacher":
            return Target(name, version, router_pb2.TARGET_KIND_TEACHER, record.teacher.model,
                          limit, record, routing)
        if which == "upstream":
            return Target(name, version, router_pb2.TARGET_KIND_UPSTREAM, record.upstream.model,
                          limit, record, routing)
        raise errors.FailedPrecondition(f"model: alias {name!r} version {version} has no target")
