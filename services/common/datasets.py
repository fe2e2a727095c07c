"""Datasets: JSONL, one prompt per line, parsed into `distill.v1.Prompt`s
(docs/ARCHITECTURE.md "One job, as data").

Two line formats:

- chat: `{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}`; a final
  assistant turn is the reference answer and is not part of the prompt;
- flat: `{"prompt"|"input"|"text": ..., "system": ..., "response"|"expected_output": ...}`.

Other top-level fields become the prompt's metadata. Every bad line is found before anything
runs and reported in ONE InvalidArgument that names each line number, so a user fixes the file
once. The generator, the judge and the gateway all parse with this module.

A parsed dataset is `Prompts`: the file's bytes and where each good line starts, the file's size
plus 8 bytes a line, not a protobuf per line (that was ~57x the file for short lines). Each
`Prompt` is built when it is read.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, BinaryIO, overload

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
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, as some editors write, before the first line
_READ_CHUNK = 1 << 20
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class InvalidDataset(InvalidArgument):
    """A dataset with bad lines; `bad_lines` holds (line number, problem) for the first ones the
    message shows, `count` how many there are."""

    def __init__(self, bad_lines: Sequence[tuple[int, str]], what: str = "dataset",
                 count: int | None = None) -> None:
        self.bad_lines = list(bad_lines)
        self.count = len(self.bad_lines) if count is None else count
        super().__init__(format_bad_lines(self.bad_lines, what, self.count))


def format_bad_lines(bad_lines: Sequence[tuple[int, str]], what: str = "dataset",
                     count: int | None = None) -> str:
    count = len(bad_lines) if count is None else count
    head = f"{what} has {count} bad line{'s' if count != 1 else ''}"
    detail = [f"line {n}: {problem}" for n, problem in bad_lines[:MAX_DETAILED]]
    rest = [n for n, _ in bad_lines[MAX_DETAILED:]]
    if rest:
        listed = ", ".join(str(n) for n in rest[:MAX_LISTED])
        unlisted = count - MAX_DETAILED - min(len(rest), MAX_LISTED)
        more = f" and {unlisted} more" if unlisted > 0 else ""
        detail.append(f"also bad: lines {listed}{more}")
    return head + ":\n" + "\n".join(detail)


class _Bad(Exception):
    pass


class Prompts(Sequence[common_pb2.Prompt]):
    """The good lines of a JSONL file as prompts (ids "line-{n}"), kept as the file's bytes and
    each line's start and number; a `Prompt` is parsed from its line when read."""

    def __init__(self, data: bytes | bytearray, starts: array, numbers: array) -> None:
        self._data, self._starts, self._numbers = data, starts, numbers

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> common_pb2.Prompt: ...

    @overload
    def __getitem__(self, index: slice) -> list[common_pb2.Prompt]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _parse_line(self.line(index), self._numbers[index])

    def __iter__(self) -> Iterator[common_pb2.Prompt]:
        for i in range(len(self)):
            yield self[i]

    def line(self, index: int) -> bytes:
        """The line as the file has it, without its line break."""
        start = self._starts[index]
        end = self._data.find(b"\n", start)
        return bytes(self._data[start:end if end >= 0 else len(self._data)])

    def ids(self) -> Iterator[str]:
        return (f"line-{number}" for number in self._numbers)

    def subset(self, indexes: Iterable[int]) -> Prompts:
        """These prompts (by index, in the order given), sharing this one's bytes."""
        starts, numbers = array(self._starts.typecode), array("I")
        for i in indexes:
            starts.append(self._starts[i])
            numbers.append(self._numbers[i])
        return Prompts(self._data, starts, numbers)


def parse_jsonl(data: bytes | bytearray | str | BinaryIO, *, what: str = "dataset",
                size: int = -1) -> Prompts:
    """All prompts of a JSONL dataset; InvalidDataset naming every bad line. `data` is the whole
    file, or a binary stream read to its end (`size` bytes, when known: read into one buffer)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, bytes | bytearray):
        data = _read_all(data, size, what)
    # 4-byte starts where they fit (a dataset is at most DEFAULT_MAX_BYTES, 1 GiB, by default)
    starts, numbers = array("I" if len(data) < 1 << 32 else "Q"), array("I")
    for number, start in _good_lines(_spans(data), what):
        starts.append(start)
        numbers.append(number)
    return Prompts(data, starts, numbers)


def count_jsonl(stream: BinaryIO, *, what: str = "dataset") -> int:
    """Checks a JSONL stream as `parse_jsonl` does, a line at a time, keeping none; returns
    how many prompts it has."""
    lines = ((n, 0, raw.removeprefix(_BOM) if n == 1 else raw)
             for n, raw in enumerate(stream, start=1))
    return sum(1 for _ in _good_lines(lines, what))


def _read_all(stream: BinaryIO, size: int, what: str) -> bytearray:
    if size < 0:
        data = bytearray()
        while chunk := stream.read(_READ_CHUNK):
            data += chunk
        return data
    data = bytearray(size)  # one buffer of the known size: no copies as it grows
    view, done = memoryview(data), 0
    while done < size and (n := stream.readinto(view[done:done + _READ_CHUNK])):
        done += n
    view.release()
    if done < size or stream.read(1):  # (reading to the end also verifies a store's sha256)
        raise InvalidArgument(f"{what}: expected {size} bytes, read {done} or more")
    return data


def _spans(data: bytes | bytearray) -> Iterator[tuple[int, int, bytes]]:
    """(line number, start, line) for each line of `data`, the first without its BOM."""
    start = len(_BOM) if data.startswith(_BOM) else 0
    number = 1
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        yield number, start, data[start:end]
        start, number = end + 1, number + 1


def _good_lines(lines: Iterable[tuple[int, int, bytes]], what: str) -> Iterator[tuple[int, int]]:
    """(number, start) of each good non-blank line; after the last line, InvalidDataset with the
    bad ones (the first few kept in full, the rest counted) or InvalidArgument when none."""
    bad: list[tuple[int, str]] = []
    count = good = 0
    for number, start, line in lines:
        if not line.strip():
            continue
        try:
            _parse_line(line, number)
        except _Bad as exc:
            count += 1
            if len(bad) < MAX_DETAILED + MAX_LISTED:
                bad.append((number, str(exc)))
            continue
        good += 1
        yield number, start
    if bad:
        raise InvalidDataset(bad, what, count)
    if not good:
        raise InvalidArgument(f"{what} is empty: it needs at least one JSONL line")


def _parse_line(line: bytes | bytearray, number: int) -> common_pb2.Prompt:
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
) -> Prompts:
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
        return parse_jsonl(stream, what=what, size=stored.size_bytes)


def split_holdout(prompts: Prompts, fraction: float, *,
                  seed: int = 0) -> tuple[Prompts, Prompts]:
    """(train, held_out): `held_out_rows` as two datasets sharing `prompts`' bytes, dataset
    order kept in both."""
    held = held_out_rows(prompts, fraction, seed=seed)
    return (prompts.subset(i for i, h in enumerate(held) if not h),
            prompts.subset(i for i, h in enumerate(held) if h))


def held_out_rows(prompts: Prompts, fraction: float, *, seed: int = 0) -> bytearray:
    """One byte a row, 1 where the row is held out: a deterministic split by hash of id,
    held_out ≈ fraction of the rows (at least one when fraction > 0, never all of them)."""
    if not 0 <= fraction < 1:
        raise InvalidArgument(f"held-out fraction must be in [0, 1), got {fraction}")
    count = round(len(prompts) * fraction)
    if fraction > 0:
        count = min(max(count, 1), len(prompts) - 1)
    # Each row's rank: the first 8 bytes of its id's sha256, 8 bytes a row; the held-out rows
    # are the `count` lowest, found with a heap of `count` plain ints (no tuple a row).
    ranks = array("Q", bytes(8 * len(prompts)))
    for i, pid in enumerate(prompts.ids()):
        ranks[i] = int.from_bytes(hashlib.sha256(f"{seed}:{pid}".encode()).digest()[:8])
    if not count:
        return bytearray(len(ranks))
    heap = [-rank for rank in islice(ranks, count)]  # the lowest so far, negated: heap[0] is
    heapq.heapify(heap)  # the highest of them
    for rank in islice(ranks, count, None):
        if -rank > heap[0]:
            heapq.heapreplace(heap, -rank)
    cut = -heap[0]
    del heap
    held = bytearray(len(ranks))
    for i, rank in enumerate(ranks):
        held[i] = rank <= cut
    return held
