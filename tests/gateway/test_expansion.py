"""The expansion stage's own rules: the calls it asks (the same again for the same seed), how a
reply becomes a prompt, and the expanded dataset's lines."""

from __future__ import annotations

from distill.v1 import common_pb2, gateway_pb2
from services.common.datasets import parse_jsonl
from services.common.specs.expansion import expansion_spec
from services.gateway.expansion import (
    SYSTEM,
    calls_for,
    expanded_lines,
    parse_reply,
    reply_tokens,
    request_prompt,
    seed_text,
)

SEEDS = [f"Review {i}: it is fine. Sentiment?" for i in range(10)]


def spec(**kw):
    return expansion_spec(gateway_pb2.ExpansionSettings(target_prompts=100, **kw))


def user_text(prompt: common_pb2.Prompt) -> str:
    return prompt.messages[-1].content


def test_a_call_shows_a_seeded_subset_of_examples_and_asks_for_one_prompt():
    call = request_prompt(SEEDS, spec(examples_per_call=3, seed=7), "Answer with a label.", 1, 0)
    assert call.id == "expand-r1-0"
    assert [m.role for m in call.messages] == [common_pb2.ROLE_SYSTEM, common_pb2.ROLE_USER]
    assert call.messages[0].content == SYSTEM
    text = user_text(call)
    assert sum(s in text for s in SEEDS) == 3 and "Example 3:" in text
    assert text.startswith("The task, as the answering model is told: Answer with a label.")
    assert "Variation seed: " in text and "Write ONE new input" in text


def test_the_same_seed_asks_the_same_calls_and_another_seed_others():
    def calls(seed):
        return [user_text(request_prompt(SEEDS, spec(seed=seed), "", r, i))
                for r in (1, 2) for i in range(5)]
    assert calls(1) == calls(1)  # a restarted job asks again what the teacher cache holds
    assert calls(1) != calls(2)
    assert len(set(calls(1))) == 10  # every call differs (subset and variation seed)


def test_instructions_are_passed_on():
    call = request_prompt(SEEDS, spec(instructions="Make them about kitchen tools."), "", 1, 0)
    assert "Make them about kitchen tools." in user_text(call)


def test_parse_reply_takes_the_first_paragraph_without_label_or_quotes():
    assert parse_reply('New input: "Review: too small. Sentiment?"\n\nAnswer: negative', 200) \
        == "Review: too small. Sentiment?"
    assert parse_reply("  Prompt: What is 3 + 4?  ", 200) == "What is 3 + 4?"
    assert parse_reply("\n\n", 200) == ""
    assert parse_reply("x" * 50, 10) == "x" * 10


def test_calls_per_round_ask_half_again():
    assert [calls_for(m) for m in (0, 1, 2, 91)] == [0, 2, 3, 137]


def test_a_call_has_room_for_a_prompt_twice_the_longest_seed():
    assert [reply_tokens(t) for t in (0, 10, 50)] == [64, 64, 100]


def test_expanded_lines_keep_the_seed_lines_and_add_flat_prompts_without_answers():
    seeds = b'{"prompt": "a", "response": "x"}\n{"prompt": "b", "response": "y"}'  # no final \n
    data = expanded_lines(seeds, ['c "quoted"', "d"])
    prompts = parse_jsonl(data)
    assert [seed_text(p) for p in prompts] == ["a", "b", 'c "quoted"', "d"]
    assert [p.HasField("reference") for p in prompts] == [True, True, False, False]
    assert prompts[2].metadata["source"] == "expansion"
