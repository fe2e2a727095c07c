"""Near-duplicate removal (MinHash/LSH) and the held-out contamination check."""

from __future__ import annotations

import pytest

from services.gateway.prompt_filters import Contamination, NearDuplicates, words

REVIEW = "The battery lasts two full days and the screen is bright even in direct sunlight."


def test_words_keep_numbers_and_operators():
    assert words("What is 12 + 34?") == ["what", "is", "12", "+", "34", "?"]


def test_a_reworded_copy_is_a_near_duplicate_and_a_different_prompt_is_not():
    seen = NearDuplicates(0.7)
    assert seen.add("a", REVIEW) is None
    assert seen.add("b", REVIEW.upper() + "  ") == REVIEW  # case and spacing do not count
    assert seen.add("c", REVIEW.replace("bright", "very bright")) == REVIEW
    assert seen.add("d", "Shipping took three weeks and the box arrived crushed.") is None


def test_short_prompts_differing_in_one_number_are_kept_apart():
    seen = NearDuplicates(0.7)
    assert seen.add("a", "What is 12 + 34?") is None
    assert seen.add("b", "What is 12 + 35?") is None
    assert seen.add("c", "what is 12 + 34 ?") == "What is 12 + 34?"


@pytest.mark.parametrize("threshold", [0.5, 0.9])
def test_the_threshold_decides(threshold):
    seen = NearDuplicates(threshold)
    base = "one two three four five six seven eight nine ten"
    seen.add("a", base)
    # 9 of 10 words and 8 of 9 pairs shared: Jaccard of the shingle sets about 0.73
    near = seen.add("b", base.replace("ten", "eleven"))
    assert (near is not None) == (threshold < 0.73)


def test_contamination_finds_a_shared_ngram_anywhere_in_the_prompt():
    check = Contamination([REVIEW, "Terrible fit, returned it."], n=5)
    copied = "I agree: the screen is bright even in direct sunlight, great phone."
    assert check.shared(copied) == "the screen is bright even"
    assert check.shared("The screen is dim and the battery dies by noon.") is None


def test_prompts_shorter_than_n_are_compared_whole():
    check = Contamination(["What is 2 + 2?"], n=8)
    assert check.shared("what is 2 + 2 ?") == "what is 2 + 2 ?"
    assert check.shared("What is 2 + 3?") is None
    assert Contamination([], n=3).shared("anything at all") is None


def test_ngrams_the_training_prompts_share_are_the_template_not_contamination():
    template = " Is this review positive or negative? Answer with one word."
    held, seed = "Review: the lid broke." + template, "Review: lovely colour." + template
    check = Contamination([held], n=6, known=[seed])
    assert check.shared("Review: fast delivery, kind staff." + template) is None
    assert Contamination([held], n=6).shared("Review: fast delivery." + template) is not None
    assert check.shared("Review: the lid broke. Sentiment?") is not None  # the held-out's own
