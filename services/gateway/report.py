"""The job report: an HTML page with PNG plots and the numbers behind them.

`build_report(job, store)` gathers what a job left (its `Job` message, the curated set, the
per-prompt evaluation rows, the trainer's training log), draws the plots and uploads a folder to
`jobs/{id}/report/`:

    index.html    the page: self-contained but for the PNGs beside it (relative <img src>), with a
                  table of the numbers under every plot; every user text is HTML-escaped
    report.json   every number on the page, and the folder's file list (`files`), which is what
                  `distill report` downloads
    loss.png, candidate_scores.png, evaluation.png, evaluation_scores.png, cost.png

A part the job does not have (evaluation turned off, training not finished, an adapter trained
before the trainer kept a log, matplotlib not installed) is a one-line "not available: why" on
the page; nothing missing or malformed in the inputs makes the report fail. Blocking: async code
calls it through `asyncio.to_thread`.

This module gathers the numbers (`collect` and its sections) and draws the plots through
report_plots.py; report_html.py renders the page.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from distill.v1 import common_pb2, gateway_pb2
from services.common.errors import DistillError
from services.common.specs.committee import lead_teacher

# Written by the trainer into the adapter folder and each checkpoint.
from services.common.specs.generate import DEFAULT_N_SAMPLES
from services.common.specs.layout import TRAINING_LOG, JobKeys
from services.common.specs.names import job_id_of
from services.common.storage import ArtifactStore
from services.gateway.report_html import (
    BIN_LABELS,
    MODEL_ORDER,
    SCORE_BINS,
    model_order,
    render_html,
)
from services.gateway.report_small_data import committee_section, expansion_section

FORMAT_VERSION = 1
LOG_FIELDS = ("loss", "sft_loss", "preference_loss", "kl_loss", "learning_rate",
              "tokens_per_second", "epoch", "tokens", "seconds")
MAX_EXAMPLES = 20
MAX_TEXT = 600
# What reading one input part can raise: store errors (NotFound, DataLoss, ...), I/O, bad JSON
# or UTF-8 (ValueError), rows of the wrong shape (AttributeError, TypeError, KeyError).
_READ_ERRORS = (DistillError, OSError, ValueError, AttributeError, TypeError, KeyError)
PLOT_FILES = {"training": "loss.png", "candidates": "candidate_scores.png",
              "evaluation": "evaluation.png", "evaluation_scores": "evaluation_scores.png",
              "cost": "cost.png"}


def build_report(job: gateway_pb2.Job, store: ArtifactStore) -> common_pb2.ArtifactRef:
    """Renders the report of `job` and uploads it to jobs/{id}/report/ (replacing an older one);
    returns the folder's ref (media type inode/directory)."""
    prefix = JobKeys(job_id_of(job.name)).report
    folder = Path(tempfile.mkdtemp(prefix="distill-report-"))
    try:
        write_report(job, store, folder)
        store.delete_prefix(prefix)
        return store.put_dir(prefix, folder).as_proto()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_report(job: gateway_pb2.Job, store: ArtifactStore, folder: Path) -> dict[str, Any]:
    """Writes index.html, report.json and the plots into `folder`; returns report.json's data."""
    folder.mkdir(parents=True, exist_ok=True)
    data = collect(job, store)
    data["plots"] = draw_plots(data, folder)
    data["files"] = sorted([*data["plots"].values(), "index.html", "report.json"])
    (folder / "index.html").write_text(render_html(data), encoding="utf-8")
    (folder / "report.json").write_text(
        json.dumps(_json_safe(data), indent=2, sort_keys=True, allow_nan=False,
                   ensure_ascii=False) + "\n",
        encoding="utf-8")
    return data


# -- gathering the numbers ------------------------------------------------------------------------

def collect(job: gateway_pb2.Job, store: ArtifactStore) -> dict[str, Any]:
    """Every number of the report, by section; a section without data says why."""
    evaluation = evaluation_section(job, store)
    training = training_section(job, store)
    return {
        "format": FORMAT_VERSION,
        "job": job_section(job),
        "training": training,
        "candidates": candidates_section(job, store),
        "evaluation": evaluation,
        "cost": cost_section(job, evaluation, training),
        "expansion": expansion_section(job),
        "committee": committee_section(job, store, _read_jsonl),
    }


def _state(job: gateway_pb2.Job) -> str:
    return gateway_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()


def _missing(note: str) -> dict[str, Any]:
    return {"available": False, "note": note}


def _number(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (report.json is strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _time(stamp) -> str | None:
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")


def _read_jsonl(store: ArtifactStore, uri: str) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL artifact, streamed (its sha256 is checked at the end)."""
    key = store.key_from_uri(uri)
    with io.TextIOWrapper(io.BufferedReader(store.open(key)), encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"line {number} is not a JSON object")
            yield row


def _usage(usage: common_pb2.Usage) -> dict[str, Any]:
    return {"requests": usage.requests, "cached_requests": usage.cached_requests,
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cost_usd": usage.cost_usd}


def job_section(job: gateway_pb2.Job) -> dict[str, Any]:
    spec = job.spec
    out = {
        "name": job.name,
        "display_name": spec.display_name,
        "state": _state(job),
        "teacher": ", ".join(f"{m.teacher.model} ({m.n_samples})" for m in spec.committee)
        or spec.teacher.model,
        "student": spec.student_model,
        "judge": spec.judge.judge.WhichOneof("kind") or "",
        "n_samples": sum(m.n_samples for m in spec.committee) or spec.n_samples
        or DEFAULT_N_SAMPLES,
        "created": _time(job.create_time),
        "updated": _time(job.update_time),
        "cost_usd": job.cost_usd,
        "promote_alias": spec.promote_alias,
        "promoted_alias_version": job.promoted_alias_version,
        "warnings": list(job.warnings),
    }
    if job.HasField("error"):
        out["error"] = {"code": job.error.code, "message": job.error.message}
    return out


def training_section(job: gateway_pb2.Job, store: ArtifactStore) -> dict[str, Any]:
    """The training log from the adapter folder, else from the newest checkpoint."""
    sources = [(what, ref.uri) for what, ref in (("adapter", job.outputs.adapter),
                                                  ("newest checkpoint", job.outputs.checkpoint))
               if ref.uri.endswith("/")]
    if not sources:
        if job.state in (gateway_pb2.JOB_STATE_FAILED, gateway_pb2.JOB_STATE_CANCELLED):
            return _missing(f"the job ended ({_state(job)}) before any training step was saved")
        return _missing(f"the job has not trained yet (state: {_state(job)})")
    problems = []
    for what, uri in sources:
        try:
            key = store.key_from_uri(uri) + TRAINING_LOG
            if not store.exists(key):
                problems.append(f"the {what} folder has no {TRAINING_LOG} (trained before the "
                                "trainer kept one)")
                continue
            rows = [_log_row(row) for row in _read_jsonl(store, store.uri(key))]
        except _READ_ERRORS as exc:
            problems.append(f"the {what}'s {TRAINING_LOG} could not be read ({exc})")
            continue
        rows = sorted((r for r in rows if r is not None), key=lambda r: r["step"])
        if not rows:
            problems.append(f"the {what}'s {TRAINING_LOG} has no steps")
            continue
        return {"available": True, "source": what, "steps": rows, "summary": _log_summary(rows)}
    return _missing("; ".join(problems))


def _log_row(row: dict[str, Any]) -> dict[str, Any] | None:
    step = row.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return None
    return {"step": step, **{name: _number(row.get(name)) for name in LOG_FIELDS}}


def _log_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    losses = [r["loss"] for r in rows if r["loss"] is not None]
    seconds = sum(r["seconds"] or 0.0 for r in rows)
    tokens = sum(r["tokens"] or 0.0 for r in rows)
    return {
        "steps": rows[-1]["step"],
        "logged_steps": len(rows),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "min_loss": min(losses) if losses else None,
        "train_seconds": seconds or None,
        "tokens": int(tokens) or None,
        "tokens_per_second": tokens / seconds if seconds else None,
    }


def _bin(score: float) -> int:
    return min(max(int(score), 0), SCORE_BINS - 1)


def _histogram(scores: Sequence[float]) -> list[int]:
    counts = [0] * SCORE_BINS
    for score in scores:
        counts[_bin(score)] += 1
    return counts


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def candidates_section(job: gateway_pb2.Job, store: ArtifactStore) -> dict[str, Any]:
    """Judge scores of the candidates kept as chosen vs rejected (from the curated set), and the
    judge's statistics over every scored candidate."""
    statistics = None
    if job.HasField("judge_statistics"):
        s = job.judge_statistics
        statistics = {
            "score_histogram": list(s.score_histogram), "prompts_total": s.prompts_total,
            "prompts_kept": s.prompts_kept, "prompts_dropped": s.prompts_dropped,
            "candidates_scored": s.candidates_scored, "judge_errors": s.judge_errors,
            "preference_pairs": s.preference_pairs,
        }
    if not job.outputs.curated.uri:
        if job.state in (gateway_pb2.JOB_STATE_FAILED, gateway_pb2.JOB_STATE_CANCELLED):
            note = f"the job ended ({_state(job)}) before the judge finished"
        else:
            note = f"the judge has not finished yet (state: {_state(job)})"
        return {**_missing(note), "judge_statistics": statistics}
    chosen: list[float] = []
    rejected: list[float] = []
    prompts = 0
    try:
        for row in _read_jsonl(store, job.outputs.curated.uri):
            prompts += 1
            for name, scores in (("chosen", chosen), ("rejected", rejected)):
                for entry in row.get(name) or []:
                    score = _number(entry.get("score")) if isinstance(entry, dict) else None
                    if score is not None:
                        scores.append(score)
    except _READ_ERRORS as exc:
        return {**_missing(f"the curated set could not be read ({exc})"),
                "judge_statistics": statistics}
    if not chosen and not rejected:
        return {**_missing("the curated set holds no scored candidate"),
                "judge_statistics": statistics}
    return {
        "available": True,
        "prompts": prompts,
        "chosen": {"count": len(chosen), "mean": _mean(chosen), "histogram": _histogram(chosen)},
        "rejected": {"count": len(rejected), "mean": _mean(rejected),
                     "histogram": _histogram(rejected)},
        "bins": BIN_LABELS,
        "judge_statistics": statistics,
    }


def _why_no_evaluation(job: gateway_pb2.Job) -> str:
    settings = job.spec.eval
    if (settings.HasField("holdout_fraction") and settings.holdout_fraction == 0
            and not settings.held_out.uri):
        return "evaluation was turned off (eval.holdout_fraction = 0)"
    if job.state in (gateway_pb2.JOB_STATE_FAILED, gateway_pb2.JOB_STATE_CANCELLED):
        return f"the job ended ({_state(job)}) before its evaluation"
    if job.state != gateway_pb2.JOB_STATE_SUCCEEDED:
        return f"the job has not been evaluated yet (state: {_state(job)})"
    return "the job recorded no evaluation"


def evaluation_section(job: gateway_pb2.Job, store: ArtifactStore) -> dict[str, Any]:
    """The held-out comparison: the job's summary, and per-prompt scores and answers from the
    evaluation rows."""
    ev = job.evaluation
    if not job.HasField("evaluation") or not ev.models:
        return _missing(_why_no_evaluation(job))
    models = [{
        "model": m.model,
        "mean_score": m.mean_score,
        "pass_rate": m.pass_rate if m.HasField("pass_rate") else None,
        "latency_seconds_mean": m.latency_seconds_mean,
        "cost_per_1k_requests_usd": m.cost_per_1k_requests_usd,
    } for m in sorted(ev.models, key=lambda m: model_order(m.model))]
    by_model = {m["model"]: m for m in models}
    section: dict[str, Any] = {
        "available": True,
        "prompts": ev.prompts,
        "models": models,
        "student_wins": ev.student_wins,
        "student_ties": ev.student_ties,
        "student_losses": ev.student_losses,
        "student_win_rate": ev.student_win_rate,
        "promoted": ev.promoted,
        "promotion_reason": ev.promotion_reason,
        "min_pass_rate": ev.min_pass_rate,
        "student_to_teacher_ratio": None,
        "student_gain_over_base": None,
    }
    student, base, teacher = (by_model.get(n) for n in MODEL_ORDER)
    if student and teacher and teacher["mean_score"] > 0:
        section["student_to_teacher_ratio"] = student["mean_score"] / teacher["mean_score"]
    if student and base:
        section["student_gain_over_base"] = student["mean_score"] - base["mean_score"]
    section.update(_evaluation_rows(job, store))
    return section


def _evaluation_rows(job: gateway_pb2.Job, store: ArtifactStore) -> dict[str, Any]:
    """Per-prompt scores (all prompts) and answers (the first MAX_EXAMPLES) of each model."""
    if not job.outputs.evaluation.uri:
        return {"per_prompt": _missing("the job has no per-prompt evaluation rows")}
    per_prompt, examples = [], []
    try:
        for row in _read_jsonl(store, job.outputs.evaluation.uri):
            answers = row.get("answers") or {}
            scores, passed = {}, {}
            for model, answer in answers.items():
                if isinstance(answer, dict):
                    scores[str(model)] = _number(answer.get("score"))
                    verdict = answer.get("passed")
                    passed[str(model)] = verdict if isinstance(verdict, bool) else None
            per_prompt.append({"prompt_id": str(row.get("prompt_id", "")), "scores": scores,
                               "passed": passed})
            if len(examples) < MAX_EXAMPLES:
                examples.append({
                    "prompt_id": str(row.get("prompt_id", "")),
                    "prompt": _clip(row.get("prompt")),
                    "reference": _clip(row.get("reference")),
                    "answers": {str(model): {"text": _clip(a.get("text")),
                                             "score": _number(a.get("score"))}
                                for model, a in answers.items() if isinstance(a, dict)},
                })
    except _READ_ERRORS as exc:
        return {"per_prompt": _missing(f"the evaluation rows could not be read ({exc})")}
    models = sorted({m for p in per_prompt for m in p["scores"]}, key=model_order)
    histograms = {m: _histogram([s for p in per_prompt if (s := p["scores"].get(m)) is not None])
                  for m in models}
    return {"per_prompt": {"available": True, "rows": per_prompt, "histograms": histograms,
                           "bins": BIN_LABELS},
            "examples": examples}


def _clip(text: Any) -> str | None:
    if text is None:
        return None
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\u2026"


def cost_section(job: gateway_pb2.Job, evaluation: dict[str, Any],
                 training: dict[str, Any]) -> dict[str, Any]:
    """What the job spent, by item; and what serving 1,000 requests costs per model."""
    def usage_detail(usage: common_pb2.Usage) -> str:
        return (f"{usage.requests:,} requests ({usage.cached_requests:,} from cache), "
                f"{usage.input_tokens:,} input + {usage.output_tokens:,} output tokens")

    lines = [
        {"item": "teacher (generation and held-out answers)", "usd": job.teacher_usage.cost_usd,
         "detail": usage_detail(job.teacher_usage), "usage": _usage(job.teacher_usage)},
        {"item": "judge", "usd": job.judge_usage.cost_usd,
         "detail": usage_detail(job.judge_usage), "usage": _usage(job.judge_usage)},
    ]
    per_1k = []
    if evaluation["available"]:
        prompts = evaluation["prompts"]
        # Paid teacher calls are already in the teacher line; self-hosted models cost
        # machine time (latency times the serving price).
        paid_teacher = lead_teacher(job.spec.committee, job.spec.teacher).provider \
            != common_pb2.PROVIDER_LOCAL
        usd = sum(m["cost_per_1k_requests_usd"] * prompts / 1000 for m in evaluation["models"]
                  if not (paid_teacher and m["model"] == "teacher"))
        lines.append({"item": "evaluation (self-hosted models)", "usd": usd,
                      "detail": f"machine time of {prompts:,} held-out answers each at the "
                                "serving price"})
        per_1k = [{"model": m["model"], "usd": m["cost_per_1k_requests_usd"],
                   "latency_seconds_mean": m["latency_seconds_mean"]}
                  for m in evaluation["models"]]
    else:
        lines.append({"item": "evaluation", "usd": None,
                      "detail": f"not available: {evaluation['note']}"})
    seconds = training.get("summary", {}).get("train_seconds") if training["available"] else None
    lines.append({"item": "training", "usd": None,
                  "detail": "not priced (your own GPUs)" + (
                      f"; {seconds:,.1f} s of optimizer steps" if seconds else "")})
    return {"lines": lines, "accrued_usd": job.cost_usd, "per_1k_requests": per_1k}


# -- plots ----------------------------------------------------------------------------------------

def draw_plots(data: dict[str, Any], folder: Path) -> dict[str, str]:
    """Draws the plots that have data into `folder`; returns {section: file name}. A plot that
    cannot be drawn gets a note in data[section]["plot_note"] instead."""
    try:
        from services.gateway import report_plots as plots
    except ImportError as exc:  # matplotlib missing: the tables still tell everything
        data["plots_note"] = f"plots not drawn: {exc} (pip install 'distill[report]')"
        return {}
    drawn: dict[str, str] = {}
    training, candidates = data["training"], data["candidates"]
    evaluation, cost = data["evaluation"], data["cost"]
    jobs = []
    if training["available"]:
        jobs.append(("training", training, lambda p: plots.loss_plot(training["steps"], p)))
    if candidates["available"]:
        jobs.append(("candidates", candidates, lambda p: plots.histogram_plot(
            BIN_LABELS, [("chosen", candidates["chosen"]["histogram"], plots.CHOSEN_COLOR),
                         ("rejected", candidates["rejected"]["histogram"],
                          plots.REJECTED_COLOR)],
            p, title="judge scores of the teacher's candidates: chosen vs rejected")))
    if evaluation["available"]:
        jobs.append(("evaluation", evaluation, lambda p: plots.evaluation_plot(
            evaluation["models"], evaluation["student_wins"], evaluation["student_ties"],
            evaluation["student_losses"], p)))
        per_prompt = evaluation["per_prompt"]
        if per_prompt["available"]:
            jobs.append(("evaluation_scores", per_prompt, lambda p: plots.histogram_plot(
                BIN_LABELS, [(m, counts, plots.MODEL_COLORS.get(m, "#17becf"))
                             for m, counts in per_prompt["histograms"].items()],
                p, title="held-out prompts: judge score of each model's answer",
                ylabel="prompts")))
    jobs.append(("cost", cost, lambda p: plots.cost_plot(
        [(line["item"], line["usd"]) for line in cost["lines"] if line["usd"] is not None],
        [(m["model"], m["usd"]) for m in cost["per_1k_requests"]], p)))
    for name, section, draw in jobs:
        path = folder / PLOT_FILES[name]
        try:
            draw(path)
        except (ValueError, TypeError, KeyError, OverflowError, RuntimeError, OSError) as exc:
            path.unlink(missing_ok=True)
            section["plot_note"] = f"plot not drawn: {type(exc).__name__}: {exc}"
            continue
        drawn[name] = PLOT_FILES[name]
    return drawn
