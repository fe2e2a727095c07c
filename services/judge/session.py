"""One Judge stream: score groups as they arrive (concurrently), then write the curated dataset."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from google.protobuf import json_format

from distill.v1 import common_pb2, judge_pb2
from services.common.errors import InvalidArgument
from services.common.judging.composite import Judge
from services.common.judging.scores import Score
from services.common.specs.judge import JudgeSpec
from services.common.specs.layout import JobKeys
from services.common.spend import NOTHING, Spend
from services.common.storage import ArtifactStore
from services.common.storage.spool import LineSpool
from services.judge.selection import Selection, select

HISTOGRAM_BINS = 11  # [0,1), ..., [9,10), [10]


@dataclass
class Statistics:
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    prompts_total: int = 0
    prompts_kept: int = 0
    prompts_dropped: int = 0
    candidates_scored: int = 0
    judge_errors: int = 0
    preference_pairs: int = 0
    spend: Spend = NOTHING

    def add(self, scores: list[Score], selection: Selection,
            spend: Spend) -> None:
        self.prompts_total += 1
        self.prompts_dropped += selection.dropped
        self.prompts_kept += not selection.dropped
        self.preference_pairs += len(selection.pairs)
        for score in scores:
            if score.ok:
                self.candidates_scored += 1
                self.histogram[min(int(score.value), HISTOGRAM_BINS - 1)] += 1
            else:
                self.judge_errors += 1
        self.spend += spend

    def to_proto(self) -> judge_pb2.JudgeStatistics:
        return judge_pb2.JudgeStatistics(
            score_histogram=self.histogram, prompts_total=self.prompts_total,
            prompts_kept=self.prompts_kept, prompts_dropped=self.prompts_dropped,
            candidates_scored=self.candidates_scored, judge_errors=self.judge_errors,
            preference_pairs=self.preference_pairs, usage=self.spend.to_proto(),
        )


def _entry(candidate: common_pb2.Candidate, score: Score) -> dict:
    return {"sample_index": candidate.sample_index, "text": candidate.text, "score": score.value,
            "criteria": score.criteria, "rationale": score.rationale}


class JudgeSession:
    def __init__(self, judge: Judge, config: JudgeSpec, store: ArtifactStore) -> None:
        self.judge = judge
        self.config = config
        self.store = store
        self.stats = Statistics()
        self._curated = LineSpool()  # rows on disk as groups finish, stored in arrival order
        self._arrivals = 0

    async def judge_group(self, group: common_pb2.CandidateGroup) -> judge_pb2.JudgedGroup:
        order = self._arrivals
        self._arrivals += 1
        if not group.candidates:
            raise InvalidArgument(f"group for prompt {group.prompt.id!r} has no candidates")
        scores = await asyncio.gather(
            *(self.judge.score(group.prompt, c.text) for c in group.candidates)
        )
        by_index = {c.sample_index: s for c, s in zip(group.candidates, scores, strict=True)}
        if len(by_index) != len(group.candidates):
            raise InvalidArgument(f"group for prompt {group.prompt.id!r}: duplicate sample_index")
        selection = select({i: s.value for i, s in by_index.items()}, self.config.top_k,
                           self.config.min_score, self.config.min_margin)
        judged = _judged(group, by_index, selection)
        self.stats.add(list(scores), selection, Spend.of(judged.usage))
        candidates = {c.sample_index: c for c in group.candidates}
        if not selection.dropped:
            row = {
                "prompt": json_format.MessageToDict(group.prompt),
                "chosen": [_entry(candidates[i], by_index[i]) for i in selection.chosen],
                "rejected": [_entry(candidates[i], by_index[i]) for i in selection.rejected],
                "pairs": [[selection.chosen.index(c), selection.rejected.index(r)]
                          for c, r in selection.pairs],
            }
            self._curated.add(order, (json.dumps(row, ensure_ascii=False) + "\n").encode())
        return judged

    @property
    def curated_key(self) -> str:
        return JobKeys(self.config.job_id).curated

    def discard(self) -> None:
        self.store.delete(self.curated_key)

    def close(self) -> None:
        self._curated.close()

    def finish(self) -> judge_pb2.JudgeSummary:
        """Writes the curated JSONL (in arrival order) and returns the summary."""
        ref = self._curated.store(self.store, self.curated_key)
        return judge_pb2.JudgeSummary(
            curated=ref.as_proto(),
            statistics=self.stats.to_proto(),
        )


def _judged(group: common_pb2.CandidateGroup, scores: dict[int, Score],
            selection: Selection) -> judge_pb2.JudgedGroup:
    chosen = set(selection.chosen)
    out = judge_pb2.JudgedGroup(prompt_id=group.prompt.id, dropped=selection.dropped,
                                drop_reason=selection.drop_reason)
    out.usage.CopyFrom(Spend.total(s.spend for s in scores.values()).to_proto())
    out.cached_calls.extend(paid.to_proto() for s in scores.values() for paid in s.cached)
    for candidate in group.candidates:
        score = scores[candidate.sample_index]
        scored = out.candidates.add(sample_index=candidate.sample_index,
                                    rationale=score.rationale, judge_error=score.error)
        if score.ok:
            scored.score = score.value
            scored.verdict = (judge_pb2.VERDICT_CHOSEN if candidate.sample_index in chosen
                              else judge_pb2.VERDICT_REJECTED)
        else:
            scored.verdict = judge_pb2.VERDICT_JUDGE_ERROR
        for name, value in score.criteria.items():
            scored.criteria.add(name=name, score=value)
    return out
