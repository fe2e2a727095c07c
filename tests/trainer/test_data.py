"""Curated rows: reading (errors name the line), chat-template tokenisation, batching."""

from __future__ import annotations

import json
import re

import pytest
from transformers import AutoTokenizer

from services.common.errors import FailedPrecondition, InvalidArgument
from services.trainer.data import (
    IGNORE_INDEX,
    batch_indices,
    collate,
    parse_curated_line,
    read_curated,
    tokenize_rows,
)
from tests.trainer.helpers import curated_rows


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def _lines(rows):
    return [json.dumps(r) for r in rows]


def test_reads_rows_and_ignores_extra_fields_and_blank_lines():
    lines = _lines(curated_rows(3))
    lines.insert(1, "   ")
    rows = read_curated(lines)
    assert [r.line for r in rows] == [1, 3, 4]
    assert rows[0].prompt_id == "line-1"
    assert rows[0].messages == ({"role": "user", "content": "Is 0 even or odd?"},)
    assert rows[0].chosen[0].text == "even" and rows[0].chosen[0].score == 10.0
    assert rows[0].rejected == ()
    assert rows[1].rejected[0].text == "It is even."


def test_tolerates_enum_roles_bare_texts_and_missing_rejected():
    row = parse_curated_line(json.dumps({
        "prompt": {"messages": [{"role": "ROLE_USER", "content": "hi"}]},
        "chosen": ["hello"]}), 7)
    assert row.prompt_id == "line-7" and row.messages[0]["role"] == "user"
    assert row.chosen[0].text == "hello" and row.chosen[0].score is None and row.rejected == ()


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "curated line 2: is not valid JSON"),
    ("[1, 2]", "curated line 2: must be a JSON object"),
    ('{"chosen": []}', "curated line 2: prompt: required"),
    ('{"prompt": {"messages": []}, "chosen": []}', "curated line 2: prompt.messages: required"),
    ('{"prompt": {"messages": [{"role": "bot", "content": "x"}]}, "chosen": []}',
     "curated line 2: prompt.messages[0].role"),
    ('{"prompt": {"messages": [{"role": "user", "content": "x"}]}}', "curated line 2: chosen"),
    ('{"prompt": {"messages": [{"role": "user", "content": "x"}]}, "chosen": [{"score": 1}]}',
     "curated line 2: chosen[0].text"),
    ('{"prompt": {"messages": [{"role": "user", "content": "x"}]}, "chosen": [], '
     '"rejected": [{"text": "a", "score": "high"}]}', "curated line 2: rejected[0].score"),
])
def test_bad_lines_are_named(line, message):
    lines = [*_lines(curated_rows(1)), line]
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        read_curated(lines)


def test_all_bad_lines_are_reported_together():
    lines = ["{", *_lines(curated_rows(1)), "3", "{"]
    with pytest.raises(InvalidArgument) as raised:
        read_curated(lines)
    text = str(raised.value)
    assert "3 bad line(s)" in text
    assert "line 1:" in text and "line 3:" in text and "line 4:" in text


def test_empty_dataset_is_invalid():
    with pytest.raises(InvalidArgument, match="empty"):
        read_curated(["", "  "])


def test_labels_cover_only_the_response_with_the_students_template(tokenizer):
    rows = read_curated(_lines(curated_rows(2)))
    examples = tokenize_rows(rows, tokenizer, max_seq_length=512)
    seq = examples[1].chosen[0]
    prompt_len = sum(1 for label in seq.labels if label == IGNORE_INDEX)
    text = tokenizer.decode(seq.input_ids)
    expected = tokenizer.apply_chat_template(
        [*rows[1].messages, {"role": "assistant", "content": "odd"}], tokenize=False)
    assert text == expected  # the student's own chat template, untouched
    response = tokenizer.decode(seq.input_ids[prompt_len:])
    assert response.startswith("odd<|im_end|>")  # the answer and its end-of-turn marker
    assert "<|im_start|>assistant" in tokenizer.decode(seq.input_ids[:prompt_len])
    assert list(seq.labels[prompt_len:]) == list(seq.input_ids[prompt_len:])
    assert len(examples[1].rejected) == 1 and len(examples[0].rejected) == 0


def test_truncation_keeps_some_response_and_drops_rows_without_chosen(tokenizer):
    long = {"prompt": {"messages": [{"role": "user", "content": "word " * 200}]},
            "chosen": [{"text": "answer " * 50}], "rejected": []}
    empty = {"prompt": {"messages": [{"role": "user", "content": "x"}]}, "chosen": []}
    examples = tokenize_rows(read_curated(_lines([long, empty])), tokenizer, max_seq_length=32)
    assert len(examples) == 1
    seq = examples[0].chosen[0]
    assert len(seq.input_ids) == 32
    assert sum(1 for label in seq.labels if label != IGNORE_INDEX) == 16
    with pytest.raises(InvalidArgument, match="no row has a chosen response"):
        tokenize_rows(read_curated(_lines([empty])), tokenizer, max_seq_length=32)


def test_a_tokenizer_without_chat_template_is_refused(tokenizer):
    class NoTemplate:
        chat_template = None

    with pytest.raises(FailedPrecondition, match="chat template"):
        tokenize_rows(read_curated(_lines(curated_rows(1))), NoTemplate(), 64)


def test_collate_pads_right_and_pairs_chosen_with_rejected(tokenizer):
    row = {"prompt": {"messages": [{"role": "user", "content": "q"}]},
           "chosen": ["a", "bb"], "rejected": ["c", "dd", "eee"]}
    examples = tokenize_rows(read_curated(_lines([row, curated_rows(1)[0]])), tokenizer, 64)
    batch = collate(examples, tokenizer.pad_token_id, with_rejected=True)
    assert batch.chosen.tolist() == [True, True, False, False, False, True]
    assert batch.pairs.tolist() == [[0, 2], [0, 3], [0, 4], [1, 2], [1, 3], [1, 4]]
    assert batch.tokens == int(batch.attention_mask.sum())
    assert (batch.labels[batch.attention_mask == 0] == IGNORE_INDEX).all()
    sft_only = collate(examples, tokenizer.pad_token_id, with_rejected=False)
    assert sft_only.chosen.tolist() == [True, True, True] and sft_only.pairs.shape == (0, 2)


def test_data_order_is_deterministic_and_resumable():
    first = batch_indices(5, 2, seed=3)
    seen = [next(first) for _ in range(7)]
    assert sorted(i for b in seen[:3] for i in b) == [0, 1, 2, 3, 4]  # one epoch
    assert seen[:3] != seen[3:6]  # reshuffled next epoch
    resumed = batch_indices(5, 2, seed=3, start=4)
    assert [next(resumed) for _ in range(3)] == seen[4:7]
