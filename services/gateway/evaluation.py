"""The evaluation stage and the promotion gate.

On the held-out split the exported student (its GGUF through llama.cpp), the untrained student
(the base GGUF the exporter made the same way) and the teacher (a committee's first member)
answer the same prompts, greedily (temperature 0), through the generator; the job's own judge
scores the three answers of each prompt in one group. Only the teacher gets the job's system
prompt, as in generation: the students are asked the way they are served. The held-out split is
either given or cut off the dataset before generation, so the student never trained on it.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from distill.v1 import common_pb2, gateway_pb2, generator_pb2, judge_pb2
from services.common import errors
from services.common.datasets import Prompts, held_out_rows, load_dataset
from services.common.specs.committee import lead_teacher
from services.common.specs.distill import DEFAULT_PROMOTE_MIN_PASS_RATE, EvalSpec, eval_spec
from services.common.specs.judge import MAX_SCORE
from services.common.specs.layout import JobKeys
from services.common.specs.names import job_id_of
from services.common.spend import NOTHING, Spend
from services.common.storage import ArtifactStore
from services.gateway import stages

# Answer order inside a judged group (the sample_index of each model's answer).
MODELS = ("teacher", "student", "base")
# Judges whose scores are pass (10) or fail (0); for the others a pass needs min_score.
PASS_FAIL_JUDGES = {"reference", "regex", "json_schema", "length"}

Progress = Callable[[str, int, int], Awaitable[None]]


def enabled(spec: gateway_pb2.DistillSpec) -> bool:
    return eval_spec(spec.eval).enabled


def min_ratio(spec: gateway_pb2.DistillSpec) -> float:
    return eval_spec(spec.eval).promote_min_ratio


def min_pass_rate(spec: gateway_pb2.DistillSpec, references: bool) -> float:
    """The gate's absolute floor: as set, else the default where every held-out row has a
    reference answer (`references`), else none (0)."""
    rate = eval_spec(spec.eval).promote_min_pass_rate
    if rate is not None:
        return rate
    return DEFAULT_PROMOTE_MIN_PASS_RATE if references else 0.0


def check(e: EvalSpec, prompts: Prompts, store: ArtifactStore) -> int | None:
    """Preflight of spec.eval beyond its fields (the held-out set, enough prompts to split).
    Returns the size of a given held-out set (None when it is split off the dataset)."""
    if e.held_out_uri:
        ref = common_pb2.ArtifactRef(uri=e.held_out_uri)
        try:
            return len(load_dataset(store, ref, what="spec.eval.held_out"))
        except errors.NotFound:
            raise errors.NotFound(f"spec.eval.held_out: no dataset at {e.held_out_uri}") from None
    if e.holdout_fraction > 0 and len(prompts) < 2:
        raise errors.InvalidArgument(
            f"spec.eval.holdout_fraction: the dataset has {len(prompts)} prompt; a held-out "
            "split needs at least 2 (or give spec.eval.held_out, or set the fraction to 0)")
    return None


def split(store: ArtifactStore, job_id: str, spec: gateway_pb2.DistillSpec, prompts: Prompts
          ) -> tuple[common_pb2.ArtifactRef, common_pb2.ArtifactRef]:
    """(train, held_out) datasets; `prompts` is spec.dataset as parsed. A fraction split keeps
    the user's own JSONL lines, so the generator parses exactly what the user wrote; each part
    is written through a temporary file, not assembled in memory. Blocking."""
    if spec.eval.held_out.uri:
        return spec.dataset, spec.eval.held_out
    held = held_out_rows(prompts, eval_spec(spec.eval).holdout_fraction, seed=spec.eval.seed)
    refs = []
    for name, wanted in (("train", 0), ("held_out", 1)):
        with tempfile.TemporaryFile() as spool:
            for i, flag in enumerate(held):
                if flag == wanted:
                    spool.write(prompts.line(i).rstrip(b"\r") + b"\n")
            spool.seek(0)
            stored = store.put(JobKeys(job_id).split(name), spool, media_type="application/jsonl")
        refs.append(stored.as_proto())
    return refs[0], refs[1]


@dataclass
class Answer:
    text: str
    latency_seconds: float
    # what the provider call cost when it was made, also for an answer from the cache
    cost_usd: float
    score: float | None = None
    passed: bool | None = None


@dataclass
class Outcome:
    evaluation: gateway_pb2.Evaluation
    rows: list[dict]
    teacher_spend: Spend = NOTHING
    judge_spend: Spend = NOTHING


def _answer_spec(job: gateway_pb2.Job, model: str) -> common_pb2.ModelSpec:
    teacher = lead_teacher(job.spec.committee, job.spec.teacher)
    if model == "teacher":
        spec = common_pb2.ModelSpec()
        spec.CopyFrom(teacher)
    else:
        gguf = job.outputs.student_gguf if model == "student" else job.outputs.base_gguf
        spec = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_LOCAL, model=gguf.uri)
        if teacher.HasField("max_tokens"):
            spec.max_tokens = teacher.max_tokens
    spec.temperature = 0.0  # one greedy answer each: the comparison is not a lottery
    return spec


async def evaluate(clients: stages.StageClients, job: gateway_pb2.Job,
                   on_progress: Progress, *, serving_usd_per_hour: float) -> Outcome:
    """Answers from all three models, scored by the job's judge; the rows and the summary."""
    spec = job.spec
    job_id = job_id_of(job.name)
    outcome = Outcome(gateway_pb2.Evaluation(), [])
    answers: dict[str, dict[str, Answer]] = {}
    prompts: dict[str, common_pb2.Prompt] = {}
    for model in MODELS:
        limits = common_pb2.RateLimits()
        if model == "teacher":
            limits.CopyFrom(spec.limits)
        else:  # llama.cpp answers one at a time; queueing would count as latency
            limits.max_concurrency = 1
        # The teacher answers as it did in generation (with the job's system prompt); the
        # students as they are served, without it: training distilled it into the student.
        request = generator_pb2.GenerateRequest(
            dataset=job.outputs.held_out, teacher=_answer_spec(job, model), n_samples=1,
            system_prompt=spec.system_prompt if model == "teacher" else "", limits=limits,
            job_id=JobKeys(job_id).eval_run_id(model), project=job.project)

        async def progress(p: generator_pb2.GenerateProgress, model: str = model) -> None:
            await on_progress(f"{model} answering the held-out prompts", p.prompts_done,
                              p.prompts_total)

        groups, spend = await stages.generate(clients, request, progress)
        if model == "teacher":
            outcome.teacher_spend = spend
        for group in groups:
            prompts[group.prompt.id] = group.prompt
            (candidate,) = group.candidates
            answers.setdefault(group.prompt.id, {})[model] = Answer(
                candidate.text, candidate.latency_seconds, candidate.original_cost_usd)

    config = judge_pb2.JudgeConfig()
    config.CopyFrom(spec.judge)
    config.job_id = JobKeys(job_id).eval_run_id("")
    config.project = job.project
    order = [pid for pid in prompts if set(answers[pid]) == set(MODELS)]
    groups = [common_pb2.CandidateGroup(prompt=prompts[pid], candidates=[
        common_pb2.Candidate(prompt_id=pid, sample_index=i, text=answers[pid][m].text)
        for i, m in enumerate(MODELS)]) for pid in order]
    pass_at = _pass_threshold(config)
    judged = 0

    async def on_judged(group: judge_pb2.JudgedGroup, spend: Spend) -> None:
        nonlocal judged
        judged += 1
        outcome.judge_spend += spend
        for scored in group.candidates:
            answer = answers[group.prompt_id][MODELS[scored.sample_index]]
            if scored.HasField("score"):
                answer.score = scored.score
                answer.passed = None if pass_at is None else scored.score >= pass_at
        await on_progress("judging the answers", judged, len(groups))

    await on_progress("judging the answers", 0, len(groups))
    await stages.judge(clients, config, groups, on_judged)
    outcome.rows = [_row(prompts[pid], answers[pid]) for pid in order]
    outcome.evaluation.CopyFrom(summarise(
        [answers[pid] for pid in order], serving_usd_per_hour,
        local_teacher=lead_teacher(spec.committee, spec.teacher).provider
        == common_pb2.PROVIDER_LOCAL))
    references = bool(order) and all(prompts[pid].HasField("reference") for pid in order)
    outcome.evaluation.min_pass_rate = min_pass_rate(spec, references)
    return outcome


def _pass_threshold(config: judge_pb2.JudgeConfig) -> float | None:
    if config.judge.WhichOneof("kind") in PASS_FAIL_JUDGES:
        return MAX_SCORE
    return config.min_score if config.HasField("min_score") else None


def _row(prompt: common_pb2.Prompt, answers: dict[str, Answer]) -> dict:
    user = [m.content for m in prompt.messages if m.role == common_pb2.ROLE_USER]
    return {
        "prompt_id": prompt.id,
        "prompt": user[-1] if user else "",
        "reference": prompt.reference if prompt.HasField("reference") else None,
        "answers": {m: {"text": a.text, "score": a.score, "passed": a.passed,
                        "latency_seconds": a.latency_seconds} for m, a in answers.items()},
    }


def summarise(rows: list[dict[str, Answer]], serving_usd_per_hour: float, *,
              local_teacher: bool) -> gateway_pb2.Evaluation:
    """Mean score, pass rate, latency and cost per 1,000 requests of each model, and the
    student's win/tie/loss against the teacher (prompts where either was not scored are left
    out of the comparison)."""
    evaluation = gateway_pb2.Evaluation(prompts=len(rows))
    for model in MODELS:
        answers = [r[model] for r in rows]
        scores = [a.score for a in answers if a.score is not None]
        passes = [a.passed for a in answers if a.passed is not None]
        latency = statistics.fmean(a.latency_seconds for a in answers) if answers else 0.0
        if model == "teacher" and not local_teacher:
            # what the calls cost when made, also for answers served from the cache
            per_1k = statistics.fmean(a.cost_usd for a in answers) * 1000 if answers else 0.0
        else:  # self-hosted: the machine's time
            per_1k = latency * 1000 / 3600 * serving_usd_per_hour
        result = gateway_pb2.ModelEvaluation(
            model=model, mean_score=statistics.fmean(scores) if scores else 0.0,
            latency_seconds_mean=latency, cost_per_1k_requests_usd=per_1k)
        if passes:
            result.pass_rate = sum(passes) / len(passes)
        evaluation.models.append(result)
    for r in rows:
        student, teacher = r["student"].score, r["teacher"].score
        if student is None or teacher is None:
            continue
        if student > teacher:
            evaluation.student_wins += 1
        elif student == teacher:
            evaluation.student_ties += 1
        else:
            evaluation.student_losses += 1
    compared = evaluation.student_wins + evaluation.student_ties + evaluation.student_losses
    if compared:
        evaluation.student_win_rate = (evaluation.student_wins
                                       + 0.5 * evaluation.student_ties) / compared
    return evaluation


def model_result(evaluation: gateway_pb2.Evaluation, model: str) -> gateway_pb2.ModelEvaluation:
    return next(m for m in evaluation.models if m.model == model)


def right_share(result: gateway_pb2.ModelEvaluation) -> float:
    """The share of held-out prompts a model got right: its pass rate, or for a graded judge
    without min_score its mean score out of the maximum."""
    return result.pass_rate if result.HasField("pass_rate") else result.mean_score / MAX_SCORE


def _percent(share: float) -> str:
    return f"{share * 100:.0f} %"


def gate(evaluation: gateway_pb2.Evaluation, ratio: float) -> tuple[bool, str]:
    """Whether the student reached `ratio` of the teacher's mean score and the absolute floor
    (`evaluation.min_pass_rate`), and why (in words)."""
    student = model_result(evaluation, "student").mean_score
    teacher = model_result(evaluation, "teacher").mean_score
    share = f"{student / teacher:.0%} of the teacher's" if teacher > 0 else "the teacher scored 0"
    numbers = (f"student {student:.2f} vs teacher {teacher:.2f} on {evaluation.prompts} "
               f"held-out prompts ({share}; {ratio:.0%} required)")
    floor = evaluation.min_pass_rate
    if floor:
        right = right_share(model_result(evaluation, "student"))
        numbers += f"; the student gets {_percent(right)} right ({_percent(floor)} required)"
        if right < floor:
            return False, f"below the eval gate's floor: {numbers}"
    if student >= ratio * teacher:
        return True, f"passed the eval gate: {numbers}"
    return False, f"below the eval gate: {numbers}"


def teacher_warning(evaluation: gateway_pb2.Evaluation) -> str | None:
    """A plain warning when the teacher itself is under the floor: its student cannot learn the
    task from it, whatever the gate says about the two of them."""
    floor = evaluation.min_pass_rate
    if not floor or not evaluation.prompts:
        return None
    right = right_share(model_result(evaluation, "teacher"))
    if right >= floor:
        return None
    return (f"the teacher gets {_percent(right)} of these right — a student cannot learn the "
            f"task from it ({evaluation.prompts} held-out prompts; the eval gate's floor is "
            f"{_percent(floor)}): try a stronger teacher, a better system prompt or a judge "
            "that fits the task")


def write_rows(store: ArtifactStore, job_id: str, rows: list[dict]) -> common_pb2.ArtifactRef:
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    return store.put_bytes(JobKeys(job_id).evaluation, data,
                           media_type="application/jsonl").as_proto()
