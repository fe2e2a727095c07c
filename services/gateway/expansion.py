"""The expansion stage: grows a job's training prompts with teacher-written ones (issue 23).

Each call shows the (first) teacher a random subset of the training prompts and asks for ONE
new prompt of the same kind, with a variation seed; the subsets and seeds come from
`spec.expansion.seed`, so a job run again asks the very same calls and the generator's teacher
cache answers them for free. Replies then pass, in order: empty, contaminated (shares a word
n-gram with the held-out split that no training prompt has), near-duplicate (MinHash/LSH,
of a seed or of a prompt kept before), and the optional judge filter. Rounds go on until the
target is reached or `max_rounds` is spent. No reference answer is ever written: the teacher
answers expanded prompts in generation like any other.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from distill.v1 import common_pb2, gateway_pb2, generator_pb2, judge_pb2
from services.common.specs.committee import lead_teacher
from services.common.specs.expansion import ExpansionSpec, expansion_spec
from services.common.specs.layout import JobKeys
from services.common.specs.names import job_id_of
from services.common.spend import NOTHING, Spend
from services.common.storage import ArtifactStore
from services.gateway import stages
from services.gateway.prompt_filters import Contamination, NearDuplicates

# Each round asks for the prompts still missing and this share more (some are dropped).
OVERSHOOT = 1.5
EXAMPLES_PER_OUTCOME = 3
# Output tokens of a call: room for one prompt twice as long as the longest seed, at least this
# many (a small model rambles on to its cap, so the cap is what a call costs).
MIN_PROMPT_TOKENS = 64
CHARS_PER_TOKEN = 3  # on the low side for English text: more room, not less
# A reply longer than this many times the longest seed prompt is cut there.
MAX_LENGTH_FACTOR = 4
SYSTEM = ("You write new inputs for a dataset that trains a model on one narrow task. Reply "
          "with the new input only: no preamble, no numbering, no answer to it.")
_LABELS = ("new input:", "input:", "new prompt:", "prompt:", "example:")

Progress = Callable[[str, int, int], Awaitable[None]]
Charge = Callable[[Spend, Spend], None]


def enabled(spec: gateway_pb2.DistillSpec) -> bool:
    return expansion_spec(spec.expansion).enabled


def seed_text(prompt: common_pb2.Prompt) -> str:
    """What a prompt asks: its last user turn."""
    users = [m.content for m in prompt.messages if m.role == common_pb2.ROLE_USER]
    return users[-1] if users else ""


def request_prompt(seeds: Sequence[str], spec: ExpansionSpec, system_prompt: str, round_: int,
                   index: int) -> common_pb2.Prompt:
    """The call that asks for one new prompt: the same (seed, round, index) always asks the
    same thing (a string seed is hashed the same way in every process)."""
    rng = random.Random(f"{spec.seed}/{round_}/{index}")
    shown = rng.sample(list(seeds), min(spec.examples_per_call, len(seeds)))
    parts = [f"Here are {len(shown)} example inputs of the task:"]
    if system_prompt:
        parts.insert(0, f"The task, as the answering model is told: {system_prompt}")
    parts += [f"Example {i}:\n{text}" for i, text in enumerate(shown, start=1)]
    parts.append("Write ONE new input of the same kind: the same format, style and length, "
                 "different content.")
    if spec.instructions:
        parts.append(spec.instructions)
    parts.append(f"Variation seed: {rng.randrange(10**6)}. Reply with the new input only.")
    return common_pb2.Prompt(id=f"expand-r{round_}-{index}", messages=[
        common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=SYSTEM),
        common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="\n\n".join(parts))])


def parse_reply(text: str, max_chars: int) -> str:
    """The new prompt in a reply: its first paragraph, without a label or quotes around it."""
    text = text.strip()
    lowered = text.lower()
    for label in _LABELS:
        if lowered.startswith(label):
            text = text[len(label):].strip()
            break
    text = text.split("\n\n", 1)[0].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text[:max_chars]


@dataclass
class Outcome:
    prompts: list[str] = field(default_factory=list)  # the generated prompts kept, in order
    statistics: gateway_pb2.ExpansionStatistics = field(
        default_factory=gateway_pb2.ExpansionStatistics)

    def drop(self, text: str, outcome: str, detail: str) -> None:
        counter = {"empty": "dropped_empty", "duplicate": "dropped_duplicates",
                   "contaminated": "dropped_contaminated", "judge": "dropped_by_judge"}[outcome]
        setattr(self.statistics, counter, getattr(self.statistics, counter) + 1)
        self._example(text, outcome, detail)

    def keep(self, text: str) -> None:
        self.prompts.append(text)
        self.statistics.generated += 1
        self._example(text, "kept", "")

    def _example(self, text: str, outcome: str, detail: str) -> None:
        if sum(e.outcome == outcome for e in self.statistics.examples) < EXAMPLES_PER_OUTCOME:
            self.statistics.examples.add(prompt=text, outcome=outcome, detail=detail)


def reply_tokens(longest_seed_tokens: int) -> int:
    """The output cap of an expansion call."""
    return max(MIN_PROMPT_TOKENS, 2 * longest_seed_tokens)


def calls_for(missing: int) -> int:
    """Calls one round makes for `missing` prompts."""
    return math.ceil(missing * OVERSHOOT) if missing > 0 else 0


async def expand(clients: stages.StageClients, job: gateway_pb2.Job,
                 seeds: Sequence[common_pb2.Prompt], held_out: Sequence[common_pb2.Prompt],
                 on_progress: Progress, charge: Charge) -> Outcome:
    """The generated prompts that passed every filter, at most target - len(seeds).
    `charge(teacher, judge)` gets what each round's calls paid as soon as they are made."""
    spec = expansion_spec(job.spec.expansion)
    keys = JobKeys(job_id_of(job.name))
    seed_texts = [seed_text(p) for p in seeds]
    max_chars = MAX_LENGTH_FACTOR * max((len(t) for t in seed_texts), default=0) or 4000
    outcome = Outcome()
    stats = outcome.statistics
    stats.seed_prompts, stats.target_prompts = len(seeds), spec.target_prompts
    wanted = spec.target_prompts - len(seeds)
    near = NearDuplicates(spec.duplicate_threshold)
    for i, text in enumerate(seed_texts):
        near.add(f"seed-{i}", text)
    contamination = Contamination((seed_text(p) for p in held_out), spec.contamination_ngram,
                                  known=seed_texts)
    teacher = common_pb2.ModelSpec()
    teacher.CopyFrom(lead_teacher(job.spec.committee, job.spec.teacher))
    teacher.max_tokens = reply_tokens(max((len(t) for t in seed_texts), default=0)
                                      // CHARS_PER_TOKEN)
    for round_ in range(1, spec.max_rounds + 1):
        missing = wanted - len(outcome.prompts)
        if missing <= 0:
            break
        stats.rounds = round_
        calls = [request_prompt(seed_texts, spec, job.spec.system_prompt, round_, i)
                 for i in range(calls_for(missing))]
        stats.requested += len(calls)
        request = generator_pb2.GenerateRequest(
            prompts=generator_pb2.InlinePrompts(prompts=calls), teacher=teacher, n_samples=1,
            limits=job.spec.limits, job_id=keys.expansion_run_id(f"r{round_}"),
            project=job.project)

        async def progress(p: generator_pb2.GenerateProgress, round_: int = round_) -> None:
            await on_progress(f"writing new prompts: round {round_}, {len(outcome.prompts)} of "
                              f"{wanted} kept so far", p.prompts_done, p.prompts_total)

        groups, spend = await stages.generate(clients, request, progress)
        charge(spend, NOTHING)
        order = {p.id: i for i, p in enumerate(calls)}
        passed: list[tuple[common_pb2.Prompt, str]] = []
        for group in sorted(groups, key=lambda g: order[g.prompt.id]):
            text = parse_reply(group.candidates[0].text, max_chars)
            if not text:
                outcome.drop(group.candidates[0].text, "empty", "no prompt in the reply")
            elif (gram := contamination.shared(text)) is not None:
                outcome.drop(text, "contaminated", f"shares {gram!r} with the held-out split")
            elif (twin := near.add(group.prompt.id, text)) is not None:
                outcome.drop(text, "duplicate", f"near-duplicate of {twin[:120]!r}")
            else:
                passed.append((group.prompt, text))
        if spec.judge is not None and passed:
            passed = await _judged(clients, job, keys, round_, passed, outcome, charge)
        for _, text in passed[:wanted - len(outcome.prompts)]:
            outcome.keep(text)
    return outcome


async def _judged(clients: stages.StageClients, job: gateway_pb2.Job, keys: JobKeys,
                  round_: int, passed: list[tuple[common_pb2.Prompt, str]], outcome: Outcome,
                  charge: Charge) -> list[tuple[common_pb2.Prompt, str]]:
    """The prompts the expansion's judge accepts: it scores each generated prompt as the answer
    to the call that asked for it."""
    settings = job.spec.expansion
    config = judge_pb2.JudgeConfig(judge=settings.judge, top_k=1,
                                   min_score=expansion_spec(settings).judge_min_score,
                                   job_id=keys.expansion_run_id(f"r{round_}-judge"),
                                   project=job.project)
    groups = [common_pb2.CandidateGroup(prompt=call, candidates=[common_pb2.Candidate(
        prompt_id=call.id, sample_index=0, text=text)]) for call, text in passed]
    verdicts: dict[str, judge_pb2.JudgedGroup] = {}

    async def on_judged(group: judge_pb2.JudgedGroup, spend: Spend) -> None:
        verdicts[group.prompt_id] = group
        charge(NOTHING, spend)

    await stages.judge(clients, config, groups, on_judged)
    accepted = []
    for call, text in passed:
        verdict = verdicts.get(call.id)
        if verdict is None or verdict.dropped:
            outcome.drop(text, "judge", verdict.drop_reason if verdict else "not judged")
        else:
            accepted.append((call, text))
    return accepted


def expanded_lines(train_lines: bytes, prompts: Sequence[str]) -> bytes:
    """The expanded dataset: the training split's own lines, then one flat line per generated
    prompt (no reference answer; `source` becomes its metadata)."""
    body = train_lines if not train_lines or train_lines.endswith(b"\n") else train_lines + b"\n"
    return body + b"".join(
        (json.dumps({"prompt": text, "source": "expansion"}, ensure_ascii=False) + "\n")
        .encode("utf-8") for text in prompts)


def write(store: ArtifactStore, job_id: str, train: common_pb2.ArtifactRef,
          prompts: Sequence[str]) -> common_pb2.ArtifactRef:
    """Stores the expanded dataset; blocking."""
    raw = store.get_bytes(store.key_from_uri(train.uri)).removeprefix(b"\xef\xbb\xbf")
    return store.put_bytes(JobKeys(job_id).expanded, expanded_lines(raw, prompts),
                           media_type="application/jsonl").as_proto()
