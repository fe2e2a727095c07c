"""A committee member as the specs hand it on, and the two figures every plan derives from its
committee (kept apart from committee.py, whose checks need generate.py, which needs these)."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.providers.spec import ModelConfig


@dataclass(frozen=True)
class Member:
    label: str  # what the report and Candidate.teacher call it
    teacher: ModelConfig
    n_samples: int
    first_index: int  # its first candidate's sample_index
    field: str  # where its teacher was given ("spec.teacher", "spec.committee[1].teacher")


class WithCommittee:
    """For a frozen dataclass with a `committee: tuple[Member, ...]` field."""

    committee: tuple[Member, ...]

    @property
    def teacher(self) -> ModelConfig:
        """The first (or only) member's teacher: it answers the held-out prompts and writes
        the expanded prompts."""
        return self.committee[0].teacher

    @property
    def n_samples(self) -> int:
        """Candidates per prompt, all members together."""
        return sum(m.n_samples for m in self.committee)
