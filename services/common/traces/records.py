"""One trace: a routed request and its answer, and the JSONL line it is stored as.

The line is a dataset line in the chat format (`services/common/datasets.py`): the conversation
as `messages`, ending with the user's turn, and everything else as extra top-level fields (which
the dataset parser keeps as metadata). So a segment can be uploaded or distilled as it is, and
the answer is never mistaken for a reference unless an export asks for that.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

TARGETS = ("student", "teacher", "upstream")


@dataclass(frozen=True)
class ServedBy:
    alias: str
    version: int
    target: str  # one of TARGETS
    model: str  # a student's job name ("jobs/{id}"), a teacher's or upstream's model id


@dataclass(frozen=True)
class Trace:
    project: str
    served_by: ServedBy
    messages: tuple[tuple[str, str], ...]  # (role, content), the request's conversation
    answer: str
    created_at: float  # unix seconds
    latency_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    validator: str | None = None  # "passed" or "failed"; None: the alias has no validator
    fallback_reason: str | None = None  # why the teacher answered instead of the student
    tags: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    shadow: bool = False  # a shadow target's answer: recorded and judged, never sent back
    judge_score: float | None = None  # 0-10, when the alias's live judge scored the answer
    judge_cost_usd: float = 0.0  # what scoring it cost (an LLM judge's calls)

    def redacted(self, redact) -> Trace:  # redact: str -> str
        return replace(self, messages=tuple((r, redact(c)) for r, c in self.messages),
                       answer=redact(self.answer))


def to_line(trace: Trace) -> dict[str, Any]:
    s = trace.served_by
    return {
        "messages": [{"role": role, "content": content} for role, content in trace.messages],
        "answer": trace.answer,
        "served_by": {"alias": s.alias, "version": s.version, "target": s.target,
                      "model": s.model},
        "created_at": trace.created_at,
        "latency_seconds": trace.latency_seconds,
        "tokens": {"prompt": trace.prompt_tokens, "completion": trace.completion_tokens},
        "cost_usd": trace.cost_usd,
        "validator": trace.validator,
        "fallback_reason": trace.fallback_reason,
        "tags": dict(trace.tags),
        "request_id": trace.request_id,
        "shadow": trace.shadow,
        "judge_score": trace.judge_score,
        "judge_cost_usd": trace.judge_cost_usd,
    }


def encode(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")


def prompt_digest(line: dict[str, Any]) -> bytes:
    """What makes two traces the same prompt: the conversation, roles and text exactly."""
    canonical = json.dumps(line.get("messages"), ensure_ascii=False, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).digest()
