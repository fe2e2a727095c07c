"""Top-k selection per prompt, deterministic, with min_score drops and min_margin pairs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Selection:
    chosen: list[int]  # sample indices, best first
    rejected: list[int]  # scored but not chosen, best first
    errored: list[int]  # the judge could not score these
    # (chosen, rejected) preference pairs
    pairs: list[tuple[int, int]] = field(default_factory=list)
    dropped: bool = False
    drop_reason: str = ""


def select(
    scores: dict[int, float | None],
    top_k: int,
    min_score: float | None = None,
    min_margin: float = 1.0,
) -> Selection:
    """Chooses up to top_k of the scored candidates (score desc, then sample index asc).

    With min_score, a candidate under it is never chosen, and a prompt whose best candidate is
    under it is dropped. A (chosen, rejected) pair is a preference pair only when the chosen
    score beats the rejected one by at least min_margin.
    """
    errored = sorted(i for i, s in scores.items() if s is None)
    ranked = sorted((i for i, s in scores.items() if s is not None), key=lambda i: (-scores[i], i))
    if not ranked:
        return Selection([], [], errored, dropped=True, drop_reason="no candidate could be scored")
    best = scores[ranked[0]]
    if min_score is not None and best < min_score:
        return Selection([], ranked, errored, dropped=True,
                         drop_reason=f"best score {best:g} is under min_score {min_score:g}")
    eligible = [i for i in ranked if min_score is None or scores[i] >= min_score]
    chosen = eligible[:top_k]
    rejected = [i for i in ranked if i not in chosen]
    pairs = [(c, r) for c in chosen for r in rejected if scores[c] - scores[r] >= min_margin]
    return Selection(chosen, rejected, errored, pairs)
