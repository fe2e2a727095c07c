"""Datasets: JSONL, one prompt per line, parsed into `distill.v1.Prompt`s
(docs/ARCHITECTURE.md "One job, as data").

Two line formats:

- chat: `{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}`; a final
  assistant turn is the reference answer and is not part of the prompt;
- flat: `{"prompt"|"input"|"text": ..., "system": ..., "response"|"expected_output": ...}`.

Other top-level fields become the prompt's metadata. Every bad line is found before anything
runs and reported in ONE InvalidArgument that names each line number, so a user fixes the file
once. The generator, the judge and the gateway all parse with this module.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from distill.v1 import common_pb2
from services.common.errors import InvalidArgument
from services.common.storage import ArtifactStore

PROMPT_KEYS = ("prompt", "input", "text")
REFERENCE_KEYS = ("response", "expected_output")
_ROLES = {
    "system": common_pb2.ROLE_SYSTEM,
    "developer": common_pb2.ROLE_SYSTEM,  # OpenAI's newer name for the system turn
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
}
ROLE_NAMES = {
    common_pb2.ROLE_SYSTEM: "system",
    common_pb2.ROLE_USER: "user",
    common_pb2.ROLE_ASSISTANT: "assistant",
}
# Lines described in full in the error; the rest are listed by number (status messages travel
# in HTTP/2 trailers, which have a size limit).
MAX_DETAILED = 20
MAX_LISTED = 500
DEFAULT_MAX_BYTES = 1 << 30
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class InvalidDataset(InvalidArgument):
    """A dataset with bad lines; `bad_lines` holds (line number, problem) for each."""

    def __init__(self, bad_lines: Sequence[tuple[int, str]], what: str = "dataset") -> None:
        self.bad_lines = list(bad_lines)
        super().__init__(format_bad_lines(self.bad_lines, what))


def format_bad_lines(bad_lines: Sequence[tuple[int, str]], what: str = "dataset") -> str:
    count = len(bad_lines)
    head = f"{what} has {count} bad line{'s' if count != 1 else ''}"
    detail = [f"line {n}: {problem}" for n, problem in bad_lines[:MAX_DETAILED]]
    rest = [n for n, _ in bad_lines[MAX_DETAILED:]]
    if rest:
        listed = ", ".join(str(n) for n in rest[:MAX_LISTED])
        more = f" and {len(rest) - MAX_LISTED} more" if len(rest) > MAX_LISTED else ""
        detail.append(f"also bad: lines {listed}{more}")
    return head + ":\n" + "\n".join(detail)


class _Bad(Exception):
    pass


def parse_jsonl(data: bytes | str | BinaryIO, *,
                what: str = "dataset") -> list[common_pb2.Prompt]:
    """All prompts of a JSONL dataset, ids "line-{n}"; InvalidDataset listing every bad line.
    `data` is the whole file or a binary stream, read a line at a time."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    lines = io.BytesIO(data) if isinstance(data, bytes) else data
    prompts: list[common_pb2.Prompt] = []
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        # (a UTF-8 byte order mark, as some editors write, before the first line)
        line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
        if not line.strip():
            continue
        try:
            prompts.append(_parse_line(line, number))
        except _Bad as exc:
            bad.append((number, str(exc)))
    if bad:
        raise InvalidDataset(bad, what)
    if not prompts:
        raise InvalidArgument(f"{what} is empty: it needs at least one JSONL line")
    return prompts


def _parse_line(line: bytes, number: int) -> common_pb2.Prompt:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise _Bad(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _Bad(f"must be a JSON object, got {type(obj).__name__}")
    prompt = common_pb2.Prompt(id=f"line-{number}")
    if "messages" in obj:
        extra = [k for k in (*PROMPT_KEYS, "system") if k in obj]
        if extra:
            raise _Bad(f"has both 'messages' and {', '.join(repr(k) for k in extra)}: use one form")
        _chat(obj["messages"], prompt)
        used = {"messages"}
    else:
        used = _flat(obj, prompt)
    for key, value in obj.items():
        if key not in used:
            prompt.metadata[key] = value if isinstance(value, str) else _compact(value)
    return prompt


def _chat(messages: Any, prompt: common_pb2.Prompt) -> None:
    if not isinstance(messages, list) or not messages:
        raise _Bad("'messages' must be a non-empty list")
    turns: list[tuple[int, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _Bad(f"messages[{i}] must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in _ROLES:
            raise _Bad(f"messages[{i}].role must be one of system, user, assistant; got {role!r}")
        turns.append((_ROLES[role], _content(message.get("content"), f"messages[{i}].content")))
    if turns[-1][0] == common_pb2.ROLE_ASSISTANT:
        prompt.reference = turns.pop()[1]
    if not turns or turns[-1][0] != common_pb2.ROLE_USER:
        raise _Bad("the conversation must end with a user turn (then optionally the reference "
                   "answer as a final assistant turn)")
    for role, content in turns:
        prompt.messages.add(role=role, content=content)


def _content(value: Any, where: str) -> str:
    if isinstance(value, list):  # OpenAI's content parts: keep the text ones
        parts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) != len(value) or not all(isinstance(p, str) for p in parts):
            raise _Bad(f"{where}: only text content parts are supported")
        value = "".join(parts)
    if not isinstance(value, str):
        raise _Bad(f"{where} must be a string")
    if not value.strip():
        raise _Bad(f"{where} is empty")
    return value


def _flat(obj: dict[str, Any], prompt: common_pb2.Prompt) -> set[str]:
    keys = [k for k in PROMPT_KEYS if k in obj]
    if not keys:
        raise _Bad("no prompt: needs 'messages' or one of 'prompt', 'input', 'text'")
    if len(keys) > 1:
        raise _Bad(f"several prompt fields ({', '.join(keys)}): use one")
    used = {keys[0]}
    if "system" in obj:
        prompt.messages.add(role=common_pb2.ROLE_SYSTEM, content=_content(obj["system"], "system"))
        used.add("system")
    prompt.messages.add(role=common_pb2.ROLE_USER, content=_content(obj[keys[0]], keys[0]))
    refs = [k for k in REFERENCE_KEYS if k in obj]
    if len(refs) > 1:
        raise _Bad("both 'response' and 'expected_output': use one")
    if refs:
        value = obj[refs[0]]
        if value is None:
            raise _Bad(f"{refs[0]} is null")
        # JSON extraction tasks give the expected output as an object: keep it as JSON text.
        prompt.reference = value if isinstance(value, str) else _compact(value)
        used.add(refs[0])
    return used


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def validate_prompts(
    prompts: Iterable[common_pb2.Prompt], *, what: str = "prompts"
) -> list[common_pb2.Prompt]:
    """Checks inline prompts as strictly as dataset lines; the error names each bad index."""
    result = list(prompts)
    bad: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, prompt in enumerate(result):
        problem = _prompt_problem(prompt, seen)
        if problem:
            bad.append((i, problem))
        seen.add(prompt.id)
    if bad:
        lines = [f"{what}[{i}]: {problem}" for i, problem in bad[:MAX_DETAILED]]
        if len(bad) > MAX_DETAILED:
            lines.append(f"... and {len(bad) - MAX_DETAILED} more")
        raise InvalidArgument(f"{len(bad)} bad {what}:\n" + "\n".join(lines))
    if not result:
        raise InvalidArgument(f"{what}: at least one prompt is needed")
    return result


def _prompt_problem(prompt: common_pb2.Prompt, seen: set[str]) -> str | None:
    if not _ID.match(prompt.id):
        return f"id {prompt.id!r} must match {_ID.pattern}"
    if prompt.id in seen:
        return f"id {prompt.id!r} is used twice"
    if not prompt.messages:
        return "has no messages"
    for j, message in enumerate(prompt.messages):
        if message.role not in ROLE_NAMES:
            return f"messages[{j}].role is unset"
        if not message.content.strip():
            return f"messages[{j}].content is empty"
    if prompt.messages[-1].role != common_pb2.ROLE_USER:
        return "the last message must be a user turn"
    return None


def load_dataset(
    store: ArtifactStore,
    ref: common_pb2.ArtifactRef,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    what: str = "dataset",
) -> list[common_pb2.Prompt]:
    """Reads (and sha256-verifies) a dataset artifact and parses it as it streams in: only the
    prompts are held, not the file as well. Blocking."""
    if not ref.uri:
        raise InvalidArgument(f"{what}.uri: required")
    key = store.key_from_uri(ref.uri)
    stored = store.stat(key)
    if ref.sha256 and ref.sha256 != stored.sha256:
        raise InvalidArgument(
            f"{what}.sha256: {ref.sha256} does not match the stored object ({stored.sha256})"
        )
    if stored.size_bytes > max_bytes:
        raise InvalidArgument(f"{what}: {stored.size_bytes} bytes, over the {max_bytes} limit")
    with store.open(key) as stream:  # reading to the end verifies the sha256 (DataLoss)
        return parse_jsonl(io.BufferedReader(stream, 1 << 20), what=what)


def split_holdout(
    prompts: Sequence[common_pb2.Prompt], fraction: float, *, seed: int = 0
) -> tuple[list[common_pb2.Prompt], list[common_pb2.Prompt]]:
    """(train, held_out): a deterministic split by hash of id, held_out ≈ fraction of the rows
    (at least one when fraction > 0, never all of them), dataset order kept in both."""
    if not 0 <= fraction < 1:
        raise InvalidArgument(f"held-out fraction must be in [0, 1), got {fraction}")
    count = round(len(prompts) * fraction)
    if fraction > 0:
        count = min(max(count, 1), len(prompts) - 1)
    ranked = sorted(
        prompts, key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).hexdigest()
    )
    held = {p.id for p in ranked[:count]}
    return [p for p in prompts if p.id not in held], [p for p in prompts if p.id in held]
