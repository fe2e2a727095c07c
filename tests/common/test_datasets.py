"""JSONL dataset parsing: both formats, every bad line reported with its number, in one error."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from distill.v1 import common_pb2
from services.common.datasets import (
    MAX_DETAILED,
    InvalidDataset,
    load_dataset,
    parse_jsonl,
    split_holdout,
    validate_prompts,
)
from services.common.errors import DataLoss, InvalidArgument
from services.common.storage import LocalStore

U, S, A = common_pb2.ROLE_USER, common_pb2.ROLE_SYSTEM, common_pb2.ROLE_ASSISTANT


def jsonl(*rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def test_chat_format_final_assistant_turn_is_the_reference():
    data = jsonl({"messages": [
        {"role": "system", "content": "Label the sentiment."},
        {"role": "user", "content": "I love it"},
        {"role": "assistant", "content": "positive"},
    ], "split": "train", "weight": 2})
    (prompt,) = parse_jsonl(data)
    assert prompt.id == "line-1"
    assert [(m.role, m.content) for m in prompt.messages] == [
        (S, "Label the sentiment."), (U, "I love it")]
    assert prompt.HasField("reference") and prompt.reference == "positive"
    assert dict(prompt.metadata) == {"split": "train", "weight": "2"}


def test_chat_format_without_reference_and_with_few_shot_turns():
    data = jsonl({"messages": [
        {"role": "user", "content": "2+2"}, {"role": "assistant", "content": "4"},
        {"role": "user",
         "content": [{"type": "text", "text": "3+"}, {"type": "text", "text": "3"}]},
    ]})
    (prompt,) = parse_jsonl(data)
    assert not prompt.HasField("reference")
    assert [m.role for m in prompt.messages] == [U, A, U]
    assert prompt.messages[-1].content == "3+3"


@pytest.mark.parametrize("prompt_key", ["prompt", "input", "text"])
@pytest.mark.parametrize("ref_key", ["response", "expected_output"])
def test_flat_format(prompt_key, ref_key):
    (prompt,) = parse_jsonl(jsonl({prompt_key: "Capital of France?", "system": "Be terse.",
                                   ref_key: "Paris", "id": "q7"}))
    assert [(m.role, m.content) for m in prompt.messages] == [
        (S, "Be terse."), (U, "Capital of France?")]
    assert prompt.reference == "Paris"
    assert prompt.metadata["id"] == "q7"


def test_flat_structured_expected_output_is_kept_as_json_text():
    (prompt,) = parse_jsonl(jsonl({"input": "Extract", "expected_output": {"name": "Ada", "n": 1}}))
    assert json.loads(prompt.reference) == {"name": "Ada", "n": 1}


def test_blank_lines_bom_and_line_numbers():
    data = b"\xef\xbb\xbf" + jsonl({"prompt": "a"}, "", "   ", {"prompt": "b"})
    prompts = parse_jsonl(data)
    assert [p.id for p in prompts] == ["line-1", "line-4"]


def test_every_bad_line_reported_in_one_error():
    data = jsonl(
        {"prompt": "fine"},                                          # 1
        "{not json",                                                 # 2
        [1, 2],                                                      # 3
        {"nothing": "here"},                                         # 4
        {"prompt": "a", "input": "b"},                               # 5
        {"messages": []},                                            # 6
        {"messages": [{"role": "robot", "content": "x"}]},           # 7
        {"messages": [{"role": "assistant", "content": "only me"}]}, # 8
        {"prompt": ""},                                              # 9
        {"prompt": 42},                                              # 10
        {"prompt": "ok", "response": "x", "expected_output": "y"},   # 11
        {"messages": [{"role": "user", "content": "q"}], "prompt": "p"},  # 12
        {"prompt": "fine too"},                                      # 13
    ) + b"\xff\xfe\n"                                                # 14
    with pytest.raises(InvalidDataset) as raised:
        parse_jsonl(data)
    error = raised.value
    assert isinstance(error, InvalidArgument)
    assert [n for n, _ in error.bad_lines] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14]
    message = str(error)
    assert message.startswith("dataset has 12 bad lines")
    for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14):
        assert f"line {n}: " in message
    assert "line 1:" not in message and "line 13:" not in message
    assert "not valid JSON" in message and "role must be one of" in message
    assert "not UTF-8" in message and "end with a user turn" in message


def test_many_bad_lines_are_all_listed_by_number():
    rows = [{"prompt": "ok"} if i % 2 else "garbage" for i in range(100)]
    with pytest.raises(InvalidDataset) as raised:
        parse_jsonl(jsonl(*rows))
    message = str(raised.value)
    bad = list(range(1, 101, 2))
    assert len(raised.value.bad_lines) == 50
    assert message.count("not valid JSON") == MAX_DETAILED
    tail = message.rsplit("also bad: lines ", 1)[1]
    assert [int(n) for n in tail.split(", ")] == bad[MAX_DETAILED:]


def test_empty_dataset_is_invalid():
    with pytest.raises(InvalidArgument, match="empty"):
        parse_jsonl(b"\n\n")


def test_inline_prompt_validation_names_each_bad_index():
    good = common_pb2.Prompt(id="a", messages=[common_pb2.ChatMessage(role=U, content="hi")])
    dup = common_pb2.Prompt(id="a", messages=[common_pb2.ChatMessage(role=U, content="hi")])
    no_role = common_pb2.Prompt(id="b", messages=[common_pb2.ChatMessage(content="hi")])
    ends_assistant = common_pb2.Prompt(id="c", messages=[
        common_pb2.ChatMessage(role=U, content="q"), common_pb2.ChatMessage(role=A, content="a")])
    bad_id = common_pb2.Prompt(id="../x", messages=[common_pb2.ChatMessage(role=U, content="q")])
    assert validate_prompts([good]) == [good]
    with pytest.raises(InvalidArgument) as raised:
        validate_prompts([good, dup, no_role, ends_assistant, bad_id])
    message = str(raised.value)
    assert message.startswith("4 bad prompts")
    assert "prompts[1]: id 'a' is used twice" in message
    assert "prompts[2]: messages[0].role is unset" in message
    assert "prompts[3]: the last message must be a user turn" in message
    assert "prompts[4]: id '../x'" in message
    with pytest.raises(InvalidArgument, match="at least one"):
        validate_prompts([])


def test_load_dataset_from_store_checks_sha256(tmp_path):
    store = LocalStore(tmp_path)
    stored = store.put_bytes("datasets/d.jsonl", jsonl({"prompt": "x"}, {"prompt": "y"}))
    ref = common_pb2.ArtifactRef(uri=stored.uri, sha256=stored.sha256)
    assert [p.messages[0].content for p in load_dataset(store, ref)] == ["x", "y"]
    with pytest.raises(InvalidArgument, match="does not match"):
        load_dataset(store, common_pb2.ArtifactRef(uri=stored.uri, sha256="0" * 64))
    with pytest.raises(InvalidArgument, match="limit"):
        load_dataset(store, ref, max_bytes=5)


def test_load_dataset_streams_the_file_and_still_verifies_it(tmp_path):
    """The file's bytes are held once, read into one buffer of their size (no second copy while
    reading, no protobuf a line: a dataset may be 1 GiB), and still checked against the stored
    sha256."""
    store = LocalStore(tmp_path)
    rows = [{"prompt": f"q{i} " + "w" * 10_000, "response": "a"} for i in range(2000)]
    stored = store.put_bytes("datasets/big.jsonl", jsonl(*rows))
    ref = common_pb2.ArtifactRef(uri=stored.uri, sha256=stored.sha256)
    tracemalloc.start()
    try:
        prompts = load_dataset(store, ref)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [p.id for p in prompts] == [f"line-{i}" for i in range(1, 2001)]
    assert prompts[-1].messages[0].content == rows[-1]["prompt"]
    assert stored.size_bytes > 20_000_000
    assert peak < 1.1 * stored.size_bytes, (peak, stored.size_bytes)

    path = tmp_path / "datasets" / "big.jsonl"
    damaged = bytearray(path.read_bytes())
    damaged[-10] ^= 1  # same size, a different sha256
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataLoss, match="sha256"):
        load_dataset(store, ref)


def test_holdout_split_is_deterministic_and_disjoint():
    prompts = parse_jsonl(jsonl(*({"prompt": f"p{i}"} for i in range(200))))
    train, held = split_holdout(prompts, 0.1, seed=3)
    _, again_held = split_holdout(prompts, 0.1, seed=3)
    assert [p.id for p in held] == [p.id for p in again_held] and len(held) == 20
    assert {p.id for p in train}.isdisjoint(p.id for p in held)
    assert len(train) + len(held) == 200
    assert [p.id for p in train] == [p.id for p in prompts if p.id not in {h.id for h in held}]
    _, other = split_holdout(prompts, 0.1, seed=4)
    assert {p.id for p in other} != {p.id for p in held}


def test_holdout_split_holds_out_the_lowest_id_hashes():
    """The rows held out are the ones whose sha256("{seed}:{id}") sorts first, as they always
    were: a job's held-out set does not change with how the split is computed."""
    import hashlib

    prompts = parse_jsonl(jsonl(*({"prompt": f"p{i}"} for i in range(300))))
    _, held = split_holdout(prompts, 0.2, seed=7)
    ids = [f"line-{n}" for n in range(1, 301)]
    lowest = sorted(ids, key=lambda i: hashlib.sha256(f"7:{i}".encode()).hexdigest())[:60]
    assert sorted(p.id for p in held) == sorted(lowest)
    assert [p.id for p in held] == [i for i in ids if i in set(lowest)]  # in file order
