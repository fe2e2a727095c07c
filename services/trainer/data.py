"""Curated rows → tokenised training examples → padded batches.

The curated JSONL (written by the judge) has one prompt per line:

    {"prompt": {"id": ..., "messages": [{"role": "user", "content": ...}], "reference": ...},
     "chosen":   [{"text": ..., "score": ...}, ...],
     "rejected": [{"text": ..., "score": ...}, ...]}

Extra fields are ignored. Bad lines raise one InvalidArgument naming each bad line (up to ten).
A row with no chosen response teaches nothing and is skipped. Responses are formatted with the
student's own chat template; labels are set on the response tokens only (the assistant turn's
text and its end-of-turn marker), -100 on the prompt.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from services.common.errors import FailedPrecondition, InvalidArgument

IGNORE_INDEX = -100
MAX_REPORTED_ERRORS = 10
ROLES = {"system", "user", "assistant"}
# Also accept the protobuf enum names (a Prompt message written with json_format).
_ROLE_ALIASES = {"ROLE_SYSTEM": "system", "ROLE_USER": "user", "ROLE_ASSISTANT": "assistant"}


@dataclass(frozen=True)
class Response:
    text: str
    score: float | None = None


@dataclass(frozen=True)
class CuratedRow:
    line: int
    prompt_id: str
    messages: tuple[dict[str, str], ...]
    chosen: tuple[Response, ...]
    rejected: tuple[Response, ...]


@dataclass(frozen=True)
class TokenSequence:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class Example:
    """One prompt: its chosen and rejected responses, each a full tokenised conversation."""

    line: int
    prompt_id: str
    chosen: tuple[TokenSequence, ...]
    rejected: tuple[TokenSequence, ...]


# ---------------------------------------------------------------------------------------------
# Reading


def read_curated(lines: Iterable[str | bytes]) -> list[CuratedRow]:
    """Parse every line; InvalidArgument listing the bad lines (1-based) if any is bad."""
    rows: list[CuratedRow] = []
    errors: list[str] = []
    n_bad = 0
    for number, raw in enumerate(lines, start=1):
        try:
            row = parse_curated_line(raw, number)
        except InvalidArgument as exc:
            n_bad += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(str(exc))
            continue
        if row is not None:
            rows.append(row)
    if errors:
        more = f" (and {n_bad - len(errors)} more)" if n_bad > len(errors) else ""
        raise InvalidArgument(
            f"curated dataset has {n_bad} bad line(s){more}: " + "; ".join(errors)
        )
    if not rows:
        raise InvalidArgument("curated dataset is empty")
    return rows


def parse_curated_line(raw: str | bytes, line: int) -> CuratedRow | None:
    """One row, or None for a blank line; InvalidArgument("curated line N: ...") if malformed."""
    def bad(problem: str) -> InvalidArgument:
        return InvalidArgument(f"curated line {line}: {problem}")

    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad("is not valid UTF-8") from exc
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise bad(f"is not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise bad(f"must be a JSON object, got {type(obj).__name__}")

    prompt = obj.get("prompt")
    if not isinstance(prompt, dict):
        raise bad("prompt: required, an object with messages")
    prompt_id = prompt.get("id", f"line-{line}")
    if not isinstance(prompt_id, (str, int)):
        raise bad("prompt.id: must be a string")
    messages = prompt.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("prompt.messages: required, a non-empty list")
    parsed: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad(f"prompt.messages[{i}]: must be an object with role and content")
        role = message.get("role")
        role = _ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in ROLES:
            raise bad(f"prompt.messages[{i}].role: must be one of system, user, assistant; "
                      f"got {message.get('role')!r}")
        content = message.get("content")
        if not isinstance(content, str):
            raise bad(f"prompt.messages[{i}].content: must be a string")
        parsed.append({"role": role, "content": content})

    if "chosen" not in obj:
        raise bad("chosen: required, a list of responses")
    return CuratedRow(
        line=line,
        prompt_id=str(prompt_id),
        messages=tuple(parsed),
        chosen=_responses(obj["chosen"], "chosen", bad),
        rejected=_responses(obj.get("rejected", []), "rejected", bad),
    )


def _responses(value: Any, name: str, bad) -> tuple[Response, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise bad(f"{name}: must be a list of responses")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):  # tolerated: a bare text
            out.append(Response(item))
            continue
        if not isinstance(item, dict):
            raise bad(f"{name}[{i}]: must be an object with text (and score)")
        text = item.get("text")
        if not isinstance(text, str):
            raise bad(f"{name}[{i}].text: required, a string")
        score = item.get("score")
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, (int, float))
            or not math.isfinite(score)
        ):
            raise bad(f"{name}[{i}].score: must be a finite number or null")
        out.append(Response(text, None if score is None else float(score)))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Tokenising


def tokenize_rows(
    rows: Sequence[CuratedRow], tokenizer: Any, max_seq_length: int
) -> list[Example]:
    """Each row as token sequences with the student's chat template; rows with no chosen left
    (none given, or all truncated away) are dropped. InvalidArgument if nothing is left."""
    if not getattr(tokenizer, "chat_template", None):
        raise FailedPrecondition(
            "the student's tokenizer has no chat template; pass a chat (instruct) model"
        )
    examples = []
    for row in rows:
        prompt_ids = _prompt_ids(tokenizer, row.messages)
        chosen = _sequences(tokenizer, row, row.chosen, prompt_ids, max_seq_length)
        if not chosen:
            continue
        rejected = _sequences(tokenizer, row, row.rejected, prompt_ids, max_seq_length)
        examples.append(Example(row.line, row.prompt_id, chosen, rejected))
    if not examples:
        raise InvalidArgument(
            "curated dataset: no row has a chosen response that fits training.max_seq_length"
        )
    return examples


def _prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                         tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _sequences(tokenizer, row: CuratedRow, responses: Sequence[Response], prompt_ids: list[int],
               max_len: int) -> tuple[TokenSequence, ...]:
    if not responses:
        return ()
    prompt_text = tokenizer.apply_chat_template(list(row.messages), add_generation_prompt=True,
                                                tokenize=False)
    out = []
    for response in responses:
        full = tokenizer.apply_chat_template(
            [*row.messages, {"role": "assistant", "content": response.text}], tokenize=False
        )
        if not full.startswith(prompt_text):
            raise FailedPrecondition(
                "the student's chat template does not render a conversation as the generation "
                f"prompt followed by the answer (curated line {row.line}); it cannot be trained "
                "on response tokens only"
            )
        response_ids = tokenizer(full[len(prompt_text):], add_special_tokens=False)["input_ids"]
        ids, labels = _fit(prompt_ids, response_ids, max_len)
        if labels:
            out.append(TokenSequence(tuple(ids), tuple(labels)))
    return tuple(out)


def _fit(prompt: list[int], response: list[int], max_len: int) -> tuple[list[int], list[int]]:
    """Prompt + response within max_len: a long prompt loses its start (keeping at least half the
    room for it), then the response is cut at the end. Labels empty if no response token fits."""
    if len(prompt) + len(response) > max_len:
        keep_prompt = max(max_len - len(response), max_len // 2)
        if len(prompt) > keep_prompt:
            prompt = prompt[len(prompt) - keep_prompt:]
        response = response[: max_len - len(prompt)]
    if not response:
        return [], []
    return prompt + response, [IGNORE_INDEX] * len(prompt) + response


# ---------------------------------------------------------------------------------------------
# Batching


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The deterministic shuffle of epoch `epoch`: same seed, same order, on any machine."""
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def batch_indices(n: int, batch_size: int, seed: int, start: int = 0) -> Iterator[list[int]]:
    """Example indices of micro-batch `start`, `start + 1`, ... forever (epoch after epoch).

    Micro-batch i is a pure function of (n, batch_size, seed, i): the data position a checkpoint
    records is just the number of micro-batches consumed.
    """
    per_epoch = math.ceil(n / batch_size)
    i = start
    while True:
        epoch, within = divmod(i, per_epoch)
        order = epoch_order(n, seed, epoch)
        yield order[within * batch_size:(within + 1) * batch_size]
        i += 1


@dataclass
class Batch:
    input_ids: Any  # LongTensor [N, T]
    attention_mask: Any  # LongTensor [N, T]
    labels: Any  # LongTensor [N, T]
    chosen: Any  # BoolTensor [N]
    pairs: Any  # LongTensor [P, 2]: (chosen row, rejected row)
    tokens: int  # non-padding tokens

    def to(self, device: Any) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     self.labels.to(device), self.chosen.to(device), self.pairs.to(device),
                     self.tokens)


def collate(examples: Sequence[Example], pad_id: int, *, with_rejected: bool) -> Batch:
    """Right-padded rows: each example's chosen, then (with_rejected) its rejected responses;
    pairs are C x R within each example."""
    import torch

    seqs: list[TokenSequence] = []
    chosen: list[bool] = []
    pairs: list[tuple[int, int]] = []
    for example in examples:
        c_rows = list(range(len(seqs), len(seqs) + len(example.chosen)))
        seqs.extend(example.chosen)
        chosen.extend([True] * len(example.chosen))
        if with_rejected and example.rejected:
            r_rows = list(range(len(seqs), len(seqs) + len(example.rejected)))
            seqs.extend(example.rejected)
            chosen.extend([False] * len(example.rejected))
            pairs.extend((c, r) for c in c_rows for r in r_rows)
    width = max(len(s.input_ids) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s.input_ids)
        input_ids[i, :n] = torch.tensor(s.input_ids)
        labels[i, :n] = torch.tensor(s.labels)
        attention[i, :n] = 1
    return Batch(
        input_ids=input_ids,
        attention_mask=attention,
        labels=labels,
        chosen=torch.tensor(chosen, dtype=torch.bool),
        pairs=torch.tensor(pairs, dtype=torch.long).reshape(-1, 2),
        tokens=int(attention.sum()),
    )
