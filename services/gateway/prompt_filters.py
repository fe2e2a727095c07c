"""The filters generated prompts pass before they join a training set: near-duplicates by
MinHash/LSH (datasketch) and contamination by shared word n-grams with the held-out split."""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise

from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+|[^\w\s]")
NUM_PERM = 128


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks (so '12 + 34' keeps its operator)."""
    return _WORD.findall(text.lower())


def _shingles(tokens: list[str]) -> set[str]:
    """Words and word pairs: short prompts that differ in one word stay apart."""
    return set(tokens) | {f"{a} {b}" for a, b in pairwise(tokens)}


def _minhash(text: str) -> MinHash:
    sketch = MinHash(num_perm=NUM_PERM, seed=1)
    sketch.update_batch([s.encode("utf-8") for s in _shingles(words(text))] or [b""])
    return sketch


class NearDuplicates:
    """Prompts seen so far, indexed by MinHash/LSH; a new prompt whose estimated Jaccard
    similarity (of its word and word-pair sets) to one of them reaches `threshold` is a
    near-duplicate of it."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._sketches: dict[str, MinHash] = {}
        self._texts: dict[str, str] = {}

    def add(self, key: str, text: str) -> str | None:
        """Adds the prompt unless it is a near-duplicate; returns the text it duplicates."""
        sketch = _minhash(text)
        for other in self._lsh.query(sketch):
            # LSH finds candidates; the estimate itself decides (LSH also lets some under).
            if sketch.jaccard(self._sketches[other]) >= self.threshold:
                return self._texts[other]
        self._lsh.insert(key, sketch)
        self._sketches[key], self._texts[key] = sketch, text
        return None


class Contamination:
    """The held-out split's word n-grams. A generated prompt that shares one with it is
    contaminated (a student trained on it could have seen the test); prompts shorter than n
    words are compared whole (a held-out prompt shorter than n words is one n-gram of itself).
    N-grams the training prompts also have (`known`: a task's template, "Is this review
    positive or negative?") are not the held-out split's own, so they do not count."""

    def __init__(self, held_out: Iterable[str], n: int, known: Iterable[str] = ()) -> None:
        self.n = n
        self._grams: set[tuple[str, ...]] = set()
        for text in held_out:
            self._grams.update(self._ngrams(words(text)))
        for text in known:
            self._grams.difference_update(self._ngrams(words(text)))

    def _ngrams(self, tokens: list[str]) -> set[tuple[str, ...]]:
        if len(tokens) < self.n:
            return {tuple(tokens)} if tokens else set()
        return {tuple(tokens[i:i + self.n]) for i in range(len(tokens) - self.n + 1)}

    def shared(self, text: str) -> str | None:
        """The first n-gram `text` shares with the held-out split, as text; None if none."""
        tokens = words(text)
        for i in range(max(len(tokens) - self.n + 1, 1)):
            gram = tuple(tokens[i:i + self.n])
            if gram and gram in self._grams:
                return " ".join(gram)
        return None
