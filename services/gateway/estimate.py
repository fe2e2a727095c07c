"""Estimate: teacher, judge and training cost, time and memory of a checked DistillSpec (its
DistillPlan), from the actual dataset, before any money is spent. Every figure says how it was
obtained (`assumptions`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from distill.v1 import common_pb2, gateway_pb2
from services.common import errors, training_memory
from services.common.datasets import split_holdout
from services.common.models import get_model, vram_required_gb
from services.common.specs.distill import DistillPlan
from services.common.specs.judge import llm_judges
from services.common.specs.members import Member
from services.common.specs.train import DEFAULT_EPOCHS
from services.gateway.expansion import SYSTEM as EXPANSION_SYSTEM
from services.gateway.expansion import calls_for, reply_tokens
from services.gateway.tokens import counter_for

BATCH_API_DISCOUNT = 0.5
MESSAGE_OVERHEAD_TOKENS = 4
JUDGE_RUBRIC_TOKENS = 350  # system message with the rubric and the JSON instructions
JUDGE_REPLY_TOKENS = 60
EXPANSION_FRAME_TOKENS = 60  # the request's own words around its examples
# LoRA training throughput on one A100/H100-class GPU in bf16, tokens/s, by student size.
# Rough public figures for PEFT on such cards; the spread becomes the low-high range.
THROUGHPUT_TOKENS_PER_S: tuple[tuple[float, float], ...] = (
    (0.2e9, 40_000), (0.7e9, 20_000), (1.5e9, 12_000), (4e9, 5_000), (9e9, 2_500),
    (float("inf"), 800),
)
GPU_USD_PER_HOUR = 2.0
# Smallest student that usually does each task type well (issue 7).
FLOOR_PARAMS = {
    gateway_pb2.TASK_TYPE_CLASSIFICATION: 0.6e9,
    gateway_pb2.TASK_TYPE_JSON_EXTRACTION: 1e9,
    gateway_pb2.TASK_TYPE_SHORT_GENERATION: 1e9,
    gateway_pb2.TASK_TYPE_LONG_FORM: 8e9,
    gateway_pb2.TASK_TYPE_REASONING: 8e9,
}


@dataclass(frozen=True)
class Range:
    low: float
    high: float


def _prompt_text(prompt: common_pb2.Prompt, system_prompt: str) -> list[str]:
    texts = [m.content for m in prompt.messages]
    if system_prompt and not any(m.role == common_pb2.ROLE_SYSTEM for m in prompt.messages):
        texts.append(system_prompt)
    return texts


def estimate(spec: DistillPlan, prompts: Sequence[common_pb2.Prompt],
             batch_api: bool = False, held_out: int | None = None
             ) -> gateway_pb2.EstimateResponse:
    """`held_out`: the size of a given held-out set; None means the split of `prompts`, which
    is made here as the job makes it: generation, judging and training count only the training
    part, the evaluation line only the held-out part."""
    out = gateway_pb2.EstimateResponse(prompts=len(prompts))
    n = spec.n_samples
    teacher = spec.teacher
    count, how = counter_for(teacher.provider, teacher.model)
    out.assumptions.append(f"teacher tokens counted with {how}")

    def tokens(part: Sequence[common_pb2.Prompt]) -> list[int]:
        return [sum(count(t) + MESSAGE_OVERHEAD_TOKENS for t in _prompt_text(p, spec.system_prompt))
                for p in part]

    held_tokens: list[int] | None = None  # None: a given held-out set, not seen here
    if spec.eval.enabled and held_out is None:
        prompts, held = split_holdout(prompts, spec.eval.holdout_fraction, seed=spec.eval.seed)
        held_tokens = tokens(held)
    prompt_tokens = tokens(prompts)
    discount = BATCH_API_DISCOUNT if batch_api else 1.0
    if batch_api:
        out.assumptions.append("teacher and judge calls priced at the Batch-API discount (50%)")
    if spec.expansion.enabled:
        prompt_tokens = _expansion(out, spec, prompt_tokens, count, discount)
    references = [count(p.reference) for p in prompts if p.HasField("reference")]
    mean_reference = sum(references) / len(references) if references else None
    if mean_reference is not None:
        out.assumptions.append(
            f"output tokens: low = mean reference answer ({mean_reference:.0f} tokens), high = "
            f"max_tokens ({teacher.max_tokens})")
    else:
        out.assumptions.append(f"output tokens: low = max_tokens/4, high = max_tokens "
                               f"({teacher.max_tokens}); the dataset has no reference answers")
    outputs = [_teacher_lines(out, member, len(spec.committee) > 1, prompt_tokens,
                              mean_reference, discount) for member in spec.committee]
    if len(spec.committee) > 1:
        out.assumptions.append(
            f"committee of {len(spec.committee)} teachers, each priced at its own rate for its "
            "own n_samples; tokens counted with the first teacher's tokenizer")
    output = Range(sum(o.low for o in outputs), sum(o.high for o in outputs))
    judge_per_call = _judge_lines(out, spec, prompt_tokens, output, n, discount)
    # The evaluation's teacher answers are the first member's.
    lead_samples = max(spec.committee[0].n_samples * len(prompt_tokens), 1)
    _evaluation(out, spec, teacher.price, prompt_tokens, outputs[0].low / lead_samples,
                outputs[0].high / lead_samples, held_tokens, held_out, judge_per_call, discount)
    _training(out, spec, prompt_tokens, output, n)
    out.total_usd_low = sum(line.usd_low for line in out.breakdown)
    out.total_usd_high = sum(line.usd_high for line in out.breakdown)
    if n == 1:
        out.warnings.append("n_samples is 1: there is no best-of-N to choose from")
    if spec.budget_usd is not None and out.total_usd_high > spec.budget_usd:
        out.warnings.append(f"the high estimate {out.total_usd_high:.2f} USD exceeds budget_usd "
                            f"{spec.budget_usd:g}")
    return out


def _teacher_lines(out, member: Member, named: bool, prompt_tokens: list[int],
                   mean_reference: float | None, discount: float) -> Range:
    """One committee member's input and output lines ("teacher", or "teacher {label}" in a
    committee); returns its output tokens."""
    teacher, n, count = member.teacher, member.n_samples, len(prompt_tokens)
    mean_out = teacher.max_tokens / 4 if mean_reference is None else min(mean_reference,
                                                                         teacher.max_tokens)
    output = Range(mean_out * n * count, teacher.max_tokens * n * count)
    # With OpenAI's `n` the prompt is billed once per prompt, otherwise once per sample.
    input_low = sum(prompt_tokens) * (1 if teacher.provider == "openai" else n)
    input_high = sum(prompt_tokens) * n
    out.teacher_input_tokens += input_high
    out.teacher_output_tokens += int(output.high)
    price = teacher.price
    if not price.known:
        where = member.field.removeprefix("spec.")
        out.warnings.append(f"no price known for teacher {teacher.model!r}: its cost counts as 0; "
                            f"set {where}.input_usd_per_mtok / output_usd_per_mtok")
    item = f"teacher {member.label}" if named else "teacher"
    _line(out, item, input_high, "input tokens",
          price.cost_usd(input_low, 0) * discount, price.cost_usd(input_high, 0) * discount)
    _line(out, item, output.high, "output tokens",
          price.cost_usd(0, int(output.low)) * discount,
          price.cost_usd(0, int(output.high)) * discount)
    return output


def _expansion(out, spec: DistillPlan, prompt_tokens: list[int], count, discount: float
               ) -> list[int]:
    """The expansion line (the first teacher's calls, and its judge filter's); returns the
    input tokens of the training prompts after expansion, a generated prompt counted as long
    as the seeds' mean."""
    settings, teacher = spec.expansion, spec.teacher
    seeds = len(prompt_tokens)
    missing = max(settings.target_prompts - seeds, 0)
    mean = sum(prompt_tokens) / max(seeds, 1)
    per_call_in = (count(EXPANSION_SYSTEM) + 2 * MESSAGE_OVERHEAD_TOKENS + EXPANSION_FRAME_TOKENS
                   + min(settings.examples_per_call, seeds) * mean)
    # Low: every reply kept in one round; high: every round asks for all of them again.
    calls = Range(missing, settings.max_rounds * calls_for(missing))
    low = teacher.price.cost_usd(int(calls.low * per_call_in), int(calls.low * mean))
    cap = reply_tokens(max(prompt_tokens, default=0))
    high = teacher.price.cost_usd(int(calls.high * per_call_in), int(calls.high * cap))
    judged = ""
    if settings.judge is not None:
        for llm in llm_judges(settings.judge):
            per_in = JUDGE_RUBRIC_TOKENS + per_call_in + mean
            low += llm.model.price.cost_usd(int(calls.low * per_in),
                                            int(calls.low * JUDGE_REPLY_TOKENS))
            high += llm.model.price.cost_usd(int(calls.high * (per_in + cap)),
                                             int(calls.high * JUDGE_REPLY_TOKENS))
        judged = "; the judge filter scores each reply"
    _line(out, "expansion", calls.high, "teacher calls", low * discount, high * discount)
    out.assumptions.append(
        f"expansion: {seeds} seed prompts grown to {settings.target_prompts}; {calls.low:.0f} "
        f"(all kept) to {calls.high:.0f} teacher calls ({settings.max_rounds} rounds of the "
        f"missing prompts and half again), each ~{per_call_in:.0f} tokens in (instructions and "
        f"{min(settings.examples_per_call, seeds)} examples) and one prompt of at most {cap} "
        f"tokens out{judged}; "
        "generation, judging and training count the expanded prompts at the seeds' mean length")
    return prompt_tokens + [round(mean)] * missing


def _line(out, item: str, quantity: float, unit: str, low: float, high: float) -> None:
    out.breakdown.add(item=item, quantity=quantity, unit=unit, usd_low=low, usd_high=high)


def _evaluation(out, spec, price, prompt_tokens: list[int], out_low: float, out_high: float,
                held_tokens: list[int] | None, held_out: int | None, judge_per_call: Range,
                discount: float) -> None:
    """The evaluation stage: one greedy teacher answer per held-out prompt, and the judge on
    three answers (student, untrained student, teacher) per prompt. `held_tokens`: the input
    tokens of each held-out prompt; for a given held-out set of `held_out` prompts, the
    training prompts' mean stands in."""
    if not spec.eval.enabled:
        out.assumptions.append("evaluation off (eval.holdout_fraction = 0)")
        return
    if held_tokens is not None:
        held_out, input_tokens = len(held_tokens), sum(held_tokens)
    else:
        input_tokens = int((held_out or 0) * sum(prompt_tokens) / max(len(prompt_tokens), 1))
    teacher_low = price.cost_usd(input_tokens, int(held_out * out_low))
    teacher_high = price.cost_usd(input_tokens, int(held_out * out_high))
    judged = 3 * held_out
    _line(out, "evaluation", held_out, "held-out prompts",
          (teacher_low + judged * judge_per_call.low) * discount,
          (teacher_high + judged * judge_per_call.high) * discount)
    split = ("generation, judging and training count only the other "
             f"{len(prompt_tokens)} prompts" if held_tokens is not None
             else "the held-out set is spec.eval.held_out")
    out.assumptions.append(
        f"evaluation: {held_out} held-out prompts, one teacher answer each and {judged} judged "
        f"answers (student, untrained student, teacher); {split}")


def _judge_lines(out, spec, prompt_tokens: list[int], output: Range, n: int,
                 discount: float) -> Range:
    """The judge's cost line; returns its cost per judged candidate (before the discount)."""
    llm_parts = llm_judges(spec.judge.judge)
    if not llm_parts:
        out.assumptions.append("programmatic judge: no judge model calls")
        return Range(0.0, 0.0)
    calls = len(prompt_tokens) * n * len(llm_parts)
    out.judge_calls = calls
    per_call_in = (sum(prompt_tokens) / max(len(prompt_tokens), 1) + JUDGE_RUBRIC_TOKENS)
    in_low = int(calls * (per_call_in + output.low / max(len(prompt_tokens) * n, 1)))
    in_high = int(calls * (per_call_in + output.high / max(len(prompt_tokens) * n, 1)))
    out_tokens = calls * JUDGE_REPLY_TOKENS
    out.judge_tokens = in_high + out_tokens
    low = high = 0.0
    for llm in llm_parts:
        config = llm.model
        share = 1 / len(llm_parts)
        low += config.price.cost_usd(int(in_low * share), int(out_tokens * share))
        high += config.price.cost_usd(int(in_high * share), int(out_tokens * share))
        if not config.price.known:
            out.warnings.append(f"no price known for judge model {config.model!r}")
    out.assumptions.append(
        f"LLM judge: one call per candidate, ~{JUDGE_RUBRIC_TOKENS} rubric tokens + prompt + "
        f"candidate in, ~{JUDGE_REPLY_TOKENS} out; parse retries not counted")
    _line(out, "judge", out.judge_tokens, "tokens", low * discount, high * discount)
    candidates = max(len(prompt_tokens) * n, 1)
    return Range(low / candidates, high / candidates)


def _training(out, spec, prompt_tokens: list[int], output: Range, n: int) -> None:
    try:
        student = get_model(spec.student_model)
        params = student.param_count
    except errors.NotFound:
        student, params = None, None
    if not params:
        out.warnings.append(f"student {spec.student_model!r} is not in the registry: no training "
                            "time or memory estimate")
        return
    k = min(spec.judge.top_k, n)
    per_example = Range(sum(prompt_tokens) / max(len(prompt_tokens), 1) + output.low / max(
        len(prompt_tokens) * n, 1), sum(prompt_tokens) / max(len(prompt_tokens), 1) + output.high
        / max(len(prompt_tokens) * n, 1))
    training = spec.train
    if training.max_steps is not None:
        steps_examples = (training.max_steps * training.batch_size
                          * training.gradient_accumulation_steps)
        examples = Range(steps_examples, steps_examples)
    else:
        epochs = training.epochs if training.epochs is not None else DEFAULT_EPOCHS
        examples = Range(len(prompt_tokens) * k * epochs, len(prompt_tokens) * k * epochs)
    beta, gamma = training.bond.beta, training.bond.gamma
    # The preference term also runs the rejected answers; any BOND term adds a reference pass.
    factor = (2.0 if beta > 0 else 1.0) * (1.33 if beta > 0 or gamma > 0 else 1.0)
    tokens = Range(examples.low * per_example.low * factor, examples.high * per_example.high
                   * factor)
    out.training_tokens = int(tokens.high)
    rate = next(r for below, r in THROUGHPUT_TOKENS_PER_S if params < below)
    out.gpu_hours_low = tokens.low / (rate * 1.3) / 3600
    out.gpu_hours_high = tokens.high / (rate * 0.7) / 3600
    out.assumptions.append(
        f"training: {examples.high:.0f} examples x ~{per_example.high:.0f} tokens x {factor:.2f} "
        f"(BOND passes) at {rate:,} tokens/s +-30% on one A100/H100-class GPU for a "
        f"{params / 1e9:.2f}B student, {GPU_USD_PER_HOUR:g} USD per GPU hour")
    _line(out, "training", out.gpu_hours_high, "GPU hours", out.gpu_hours_low * GPU_USD_PER_HOUR,
          out.gpu_hours_high * GPU_USD_PER_HOUR)
    _peak_vram(out, spec, student.name, params, prompt_tokens, output.high / max(
        len(prompt_tokens) * n, 1), beta, gamma)
    floor = FLOOR_PARAMS.get(spec.task_type)
    if floor and params < floor * 0.9:
        task = gateway_pb2.TaskType.Name(spec.task_type).removeprefix("TASK_TYPE_").lower()
        out.warnings.append(
            f"student {student.name} ({params / 1e9:.2f}B) is under the usual floor for "
            f"{task} tasks ({floor / 1e9:g}B): expect a larger gap to the teacher")
    if math.isfinite(out.gpu_hours_high) and out.gpu_hours_high > 24:
        out.warnings.append(f"training may take up to {out.gpu_hours_high:.0f} GPU hours")


def _peak_vram(out, spec, student: str, params: int, prompt_tokens: list[int],
               answer_tokens: float, beta: float, gamma: float) -> None:
    """peak_vram_gb from the memory model for this job's student, batch, sequence length (the
    longest prompt plus the longest answer, at most training.max_seq_length), LoRA rank and
    loss; the seed's table for students whose architecture is not known here."""
    shape = training_memory.STUDENT_SHAPES.get(student)
    if shape is None:
        out.peak_vram_gb = vram_required_gb(params)
        out.assumptions.append(f"peak VRAM {out.peak_vram_gb} GB: LoRA on a 4-bit base "
                               "(0.6-1B: 8 GB, 3B: 16 GB, 8B: 24 GB)")
        return
    training = spec.train
    length = min(training.max_seq_length, int(max(prompt_tokens, default=0) + answer_tokens))
    trl = training.backend == "trl"
    job = training_memory.TrainingJob(
        sequence_length=max(length, 1), batch_size=training.batch_size,
        lora_r=training.lora.r, beta=beta, gamma=gamma,
        precision="bfloat16" if trl else "4bit", device="cuda", gradient_checkpointing=True)
    peak = training_memory.peak_memory(shape, job)
    out.peak_vram_gb = peak.total_gb
    base = "bf16 base with gradient checkpointing (trl backend)" if trl else \
        "4-bit base with gradient checkpointing (unsloth backend)"
    out.assumptions.append(
        f"peak VRAM {peak.total_gb} GB for {student} on a {base}, batch {job.batch_size} x "
        f"{job.sequences // job.batch_size} sequences of up to {job.sequence_length} tokens, "
        f"LoRA r {job.lora_r}: {peak.parts()}; {training_memory.FORMULA}")
