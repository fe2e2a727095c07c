"""Selection properties: k chosen when possible, chosen ≥ rejected, determinism, drops, margins."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.judge.selection import select

scores_st = st.dictionaries(
    st.integers(min_value=0, max_value=15),
    st.one_of(st.none(), st.floats(min_value=0, max_value=10, allow_nan=False)),
    min_size=1, max_size=16,
)
top_k_st = st.integers(min_value=1, max_value=16)
min_score_st = st.one_of(st.none(), st.floats(min_value=0, max_value=10))
margin_st = st.floats(min_value=0, max_value=10)


@given(scores_st, top_k_st, min_score_st, margin_st)
def test_selection_properties(scores, top_k, min_score, margin):
    s = select(scores, top_k, min_score, margin)
    scored = {i: v for i, v in scores.items() if v is not None}
    assert sorted(s.errored) == sorted(i for i, v in scores.items() if v is None)
    if s.dropped:
        assert not s.chosen and not s.pairs
        assert not scored or (min_score is not None and max(scored.values()) < min_score)
        return
    eligible = [i for i, v in scored.items() if min_score is None or v >= min_score]
    assert len(s.chosen) == min(top_k, len(eligible))  # k chosen when possible
    assert set(s.chosen) | set(s.rejected) == set(scored)
    assert not set(s.chosen) & set(s.rejected)
    if s.rejected:
        assert min(scored[i] for i in s.chosen) >= max(scored[i] for i in s.rejected)
    for c, r in s.pairs:
        assert c in s.chosen and r in s.rejected and scored[c] - scored[r] >= margin
    expected_pairs = {(c, r) for c in s.chosen for r in s.rejected
                      if scored[c] - scored[r] >= margin}
    assert set(s.pairs) == expected_pairs


@given(scores_st, top_k_st, min_score_st, margin_st)
def test_selection_is_deterministic_whatever_the_input_order(scores, top_k, min_score, margin):
    reversed_scores = dict(reversed(list(scores.items())))
    assert select(scores, top_k, min_score, margin) == select(reversed_scores, top_k, min_score,
                                                              margin)


def test_ties_break_on_the_lower_sample_index():
    assert select({3: 5.0, 1: 5.0, 2: 5.0, 0: 1.0}, top_k=2).chosen == [1, 2]


def test_under_min_score_is_dropped_with_a_reason():
    s = select({0: 2.0, 1: 3.0}, top_k=2, min_score=5)
    assert s.dropped and "3 is under min_score 5" in s.drop_reason


def test_min_score_keeps_wrong_answers_out_of_chosen():
    s = select({0: 10.0, 1: 0.0, 2: 0.0, 3: 10.0}, top_k=3, min_score=5)
    assert s.chosen == [0, 3] and s.rejected == [1, 2]
    assert s.pairs == [(0, 1), (0, 2), (3, 1), (3, 2)]
