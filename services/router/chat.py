"""What the router answers, whatever the caller spoke: `ChatCall` in, `Answer` / `Delta` out.

The OpenAI HTTP API and the gRPC servicer both turn their request into a `ChatCall` here, so
both refuse the same input with the same messages (which name the field and the limit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from distill.v1 import common_pb2, router_pb2
from services.common.errors import InvalidArgument
from services.common.providers import ROLES, Message

MAX_STOP_SEQUENCES = 4
# OpenAI's own bounds on a request's metadata, which becomes its trace's tags.
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 16, 64, 512
MAX_USER = 256
_ROLE_BY_PROTO = {common_pb2.ROLE_SYSTEM: "system", common_pb2.ROLE_USER: "user",
                  common_pb2.ROLE_ASSISTANT: "assistant"}


@dataclass(frozen=True)
class ChatCall:
    """A checked chat request: which alias (and version) and what to ask it."""

    model: str
    messages: tuple[Message, ...]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    tags: tuple[tuple[str, str], ...] = ()  # recorded with the trace
    user: str = ""  # the sticky key of a split alias
    trace: bool = True  # False: the caller opted out of this request's trace

    def sampling(self) -> dict[str, Any]:
        """The sampling fields that were set, in OpenAI's names."""
        fields = {"temperature": self.temperature, "max_tokens": self.max_tokens,
                  "top_p": self.top_p, "seed": self.seed, "stop": list(self.stop) or None}
        return {k: v for k, v in fields.items() if v is not None}


KIND_NAMES = {router_pb2.TARGET_KIND_STUDENT: "student", router_pb2.TARGET_KIND_TEACHER: "teacher",
              router_pb2.TARGET_KIND_UPSTREAM: "upstream"}


@dataclass(frozen=True)
class ServedBy:
    alias: str
    version: int
    kind: int  # router_pb2.TargetKind
    model: str

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, "unspecified")

    def as_proto(self) -> router_pb2.ServedBy:
        return router_pb2.ServedBy(alias=self.alias, version=self.version, kind=self.kind,
                                   model=self.model)


@dataclass
class Answer:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float = 0.0
    latency_seconds: float = 0.0
    served_by: ServedBy | None = None

    def usage_proto(self) -> router_pb2.ChatUsage:
        return router_pb2.ChatUsage(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
            cost_usd=self.cost_usd, latency_seconds=self.latency_seconds)


@dataclass
class Delta:
    """A piece of a streamed answer; the last one has `final` set (with the totals)."""

    text: str = ""
    final: Answer | None = field(default=None)


def from_openai(body: Any) -> ChatCall:
    """An OpenAI chat-completions body (already JSON-decoded)."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("body: must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidArgument("model: required, a string naming an alias")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidArgument("messages: required, a non-empty list")
    messages = []
    for i, message in enumerate(raw):
        if not isinstance(message, Mapping):
            raise InvalidArgument(f"messages[{i}]: must be an object with role and content")
        messages.append(_message(message.get("role"), message.get("content"), f"messages[{i}]"))
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    call = _checked(model, messages, body.get("temperature"), body.get("max_tokens"),
                    body.get("top_p"), stop or [], body.get("seed"))
    return replace(call, tags=_tags(body.get("metadata") or {}, "metadata"),
                   user=_user(body.get("user") or ""))


def from_proto(request: router_pb2.ChatRequest | router_pb2.ChatStreamRequest) -> ChatCall:
    if not request.model:
        raise InvalidArgument("model: required, an alias name")
    if not request.messages:
        raise InvalidArgument("messages: required, at least one")
    messages = [_message(_ROLE_BY_PROTO.get(m.role), m.content, f"messages[{i}]")
                for i, m in enumerate(request.messages)]
    s = request.sampling
    call = _checked(
        request.model, messages,
        s.temperature if s.HasField("temperature") else None,
        s.max_tokens if s.HasField("max_tokens") else None,
        s.top_p if s.HasField("top_p") else None,
        list(s.stop), s.seed if s.HasField("seed") else None)
    return replace(call, tags=_tags(dict(request.tags), "tags"), user=_user(request.user),
                   trace=not request.no_trace)


def _tags(tags: Any, field: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(tags, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise InvalidArgument(f"{field}: must be an object of strings")
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"{field}: at most {MAX_TAGS} keys, got {len(tags)}")
    for key, value in tags.items():
        if not key or len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise InvalidArgument(f"{field}.{key[:MAX_TAG_KEY]}: keys are 1 to {MAX_TAG_KEY} "
                                  f"characters, values at most {MAX_TAG_VALUE}")
    return tuple(sorted(tags.items()))


def _user(user: Any) -> str:
    if not isinstance(user, str) or len(user) > MAX_USER:
        raise InvalidArgument(f"user: a string of at most {MAX_USER} characters")
    return user


def _message(role: Any, content: Any, where: str) -> Message:
    if role not in ROLES:
        raise InvalidArgument(f"{where}.role: must be one of {', '.join(ROLES)}, got {role!r}")
    if not isinstance(content, str):
        raise InvalidArgument(f"{where}.content: must be a string")
    return Message(role, content)


def _checked(model: str, messages: list[Message], temperature: Any, max_tokens: Any,
             top_p: Any, stop: Any, seed: Any) -> ChatCall:
    if temperature is not None and not (_number(temperature) and 0 <= temperature <= 2):
        raise InvalidArgument(f"temperature: must be a number within 0..2, got {temperature!r}")
    if max_tokens is not None and not (_integer(max_tokens) and max_tokens >= 1):
        raise InvalidArgument(f"max_tokens: must be an integer >= 1, got {max_tokens!r}")
    if top_p is not None and not (_number(top_p) and 0 < top_p <= 1):
        raise InvalidArgument(f"top_p: must be a number in (0, 1], got {top_p!r}")
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise InvalidArgument("stop: must be a string or a list of non-empty strings")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidArgument(f"stop: at most {MAX_STOP_SEQUENCES} sequences, got {len(stop)}")
    if seed is not None and not _integer(seed):
        raise InvalidArgument(f"seed: must be an integer, got {seed!r}")
    return ChatCall(model, tuple(messages), temperature, max_tokens, top_p, tuple(stop), seed)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
