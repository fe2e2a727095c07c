"""The job report's page: `render_html(data)` turns the numbers that report.py gathers
(`collect`) into index.html.

The page is self-contained but for the PNGs beside it (relative <img src>, drawn by
report_plots.py), with a table of the numbers under every plot. Every cell and user text goes
through `_e` (HTML-escaped); the only markup is this module's own. The score bins and model order
live here because report.py's sections use them too (report.py imports them from here).
"""

from __future__ import annotations

import html
from collections.abc import Collection, Sequence
from typing import Any

from services.gateway.report_small_data import html_sections

# The judge's bins (services/judge/session.py): [0,1), ..., [9,10), [10].
SCORE_BINS = 11
BIN_LABELS = [f"{i}\u2013{i + 1}" for i in range(SCORE_BINS - 1)] + ["10"]
MODEL_ORDER = ("student", "base", "teacher")
MODEL_NAMES = {"student": "student (trained)", "base": "base (untrained student)",
               "teacher": "teacher"}
MAX_TABLE_ROWS = 25  # the page's step table; report.json has every step


def model_order(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


# -- the page -------------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _f(value: float | None, fmt: str = ".4f") -> str:
    return "\u2014" if value is None else format(value, fmt)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
           numeric: Collection[int] | None = None) -> str:
    """An HTML table; every cell is escaped (callers pass plain text, never markup). Columns in
    `numeric` (default: all but the first) are right-aligned."""
    if numeric is None:
        numeric = range(1, len(headers))
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if i in numeric else "text"}">{_e(c)}</td>'
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str) -> str:
    return f'<p class="note">not available: {_e(text)}</p>'


def _figure(data: dict[str, Any], section: str, alt: str, holder: dict[str, Any]) -> str:
    name = data["plots"].get(section)
    if name:
        return f'<figure><img src="{_e(name)}" alt="{_e(alt)}"></figure>'
    why = holder.get("plot_note") or data.get("plots_note")
    return f'<p class="note">{_e(why)}</p>' if why else ""


def _sample(rows: Sequence[Any], limit: int) -> list[Any]:
    """At most `limit` rows, evenly spaced, always the first and the last."""
    if len(rows) <= limit:
        return list(rows)
    picks = sorted({round(i * (len(rows) - 1) / (limit - 1)) for i in range(limit)})
    return [rows[i] for i in picks]


def _html_training(data: dict[str, Any]) -> str:
    training = data["training"]
    parts = ["<h2>Training</h2>"]
    if not training["available"]:
        return parts[0] + _note(training["note"])
    summary = training["summary"]
    parts.append("<p>Loss and its three parts, L = (1 &minus; &beta;)&middot;L<sub>sft</sub> + "
                 "&beta;&middot;L<sub>pref</sub> + &gamma;&middot;L<sub>kl</sub>, over "
                 f"{summary['steps']} optimizer steps (from the {_e(training['source'])}'s "
                 "training log).</p>")
    parts.append(_figure(data, "training", "loss, SFT, preference and KL loss per step",
                         training))
    parts.append(_table(["figure", "value"], [
        ("steps", summary["steps"]),
        ("first loss", _f(summary["first_loss"])),
        ("final loss", _f(summary["final_loss"])),
        ("lowest loss", _f(summary["min_loss"])),
        ("training time (s)", _f(summary["train_seconds"], ",.1f")),
        ("tokens", _f(summary["tokens"], ",.0f")),
        ("tokens per second", _f(summary["tokens_per_second"], ",.1f")),
    ]))
    steps = training["steps"]
    shown = _sample(steps, MAX_TABLE_ROWS)
    if len(shown) < len(steps):
        parts.append(f"<p>{len(shown)} of {len(steps)} steps shown, evenly spaced; every step is "
                     "in report.json.</p>")
    parts.append(_table(
        ["step", "loss", "SFT", "preference", "KL", "learning rate", "tokens/s", "epoch"],
        [(r["step"], _f(r["loss"]), _f(r["sft_loss"]), _f(r["preference_loss"]),
          _f(r["kl_loss"]), _f(r["learning_rate"], ".2e"), _f(r["tokens_per_second"], ",.1f"),
          _f(r["epoch"], ".2f")) for r in shown], numeric=range(8)))
    return "".join(parts)


def _html_candidates(data: dict[str, Any]) -> str:
    candidates = data["candidates"]
    parts = ["<h2>Teacher candidates: chosen vs rejected</h2>"]
    if not candidates["available"]:
        parts.append(_note(candidates["note"]))
    else:
        chosen, rejected = candidates["chosen"], candidates["rejected"]
        parts.append(f"<p>Judge scores of the candidates kept for training on "
                     f"{candidates['prompts']:,} prompts: {chosen['count']:,} chosen (mean "
                     f"{_f(chosen['mean'], '.2f')}), {rejected['count']:,} rejected (mean "
                     f"{_f(rejected['mean'], '.2f')}).</p>")
        parts.append(_figure(data, "candidates", "histogram of chosen and rejected scores",
                             candidates))
        stats = candidates["judge_statistics"]
        every = stats["score_histogram"] if stats and len(stats["score_histogram"]) == \
            SCORE_BINS else None
        headers = ["score", "chosen", "rejected"] + (["every scored candidate"] if every else [])
        rows = [[label, chosen["histogram"][i], rejected["histogram"][i],
                 *([every[i]] if every else [])] for i, label in enumerate(BIN_LABELS)]
        parts.append(_table(headers, rows))
    stats = candidates.get("judge_statistics")
    if stats:
        parts.append("<h3>Judge statistics</h3>")
        parts.append(_table(["figure", "value"], [
            ("prompts judged", f"{stats['prompts_total']:,}"),
            ("prompts kept", f"{stats['prompts_kept']:,}"),
            ("prompts dropped (under min_score)", f"{stats['prompts_dropped']:,}"),
            ("candidates scored", f"{stats['candidates_scored']:,}"),
            ("judge errors", f"{stats['judge_errors']:,}"),
            ("preference pairs", f"{stats['preference_pairs']:,}"),
        ]))
    return "".join(parts)


def _verdict(evaluation: dict[str, Any]) -> str:
    by_model = {m["model"]: m for m in evaluation["models"]}
    bits = []
    for model in MODEL_ORDER:
        if model in by_model:
            m = by_model[model]
            rate = f", pass rate {m['pass_rate']:.0%}" if m["pass_rate"] is not None else ""
            bits.append(f"{MODEL_NAMES[model]} {m['mean_score']:.2f}{rate}")
    text = (f"On {evaluation['prompts']:,} held-out prompts, mean judge score: "
            + "; ".join(bits) + ".")
    if evaluation["student_gain_over_base"] is not None:
        gain = evaluation["student_gain_over_base"]
        text += (f" Training {'raised' if gain > 0 else 'did not raise'} the student's score "
                 f"({gain:+.2f} over the untrained student).")
    if evaluation["student_to_teacher_ratio"] is not None:
        text += f" Student/teacher score ratio {evaluation['student_to_teacher_ratio']:.0%}."
    text += (f" Win rate against the teacher {evaluation['student_win_rate']:.0%} "
             "(win 1, tie ½; 50% is parity).")
    return text


def _html_evaluation(data: dict[str, Any]) -> str:
    evaluation = data["evaluation"]
    parts = ["<h2>Evaluation on held-out prompts</h2>"]
    if not evaluation["available"]:
        return parts[0] + _note(evaluation["note"])
    parts.append(f"<p>{_e(_verdict(evaluation))}</p>")
    promoted = "promoted" if evaluation["promoted"] else "not promoted"
    reason = evaluation["promotion_reason"]
    parts.append(f'<p class="verdict">Alias: {promoted}'
                 + (f": {_e(reason)}" if reason else "") + "</p>")
    parts.append(_figure(data, "evaluation", "mean score, pass rate and win/tie/loss per model",
                         evaluation))
    parts.append(_table(
        ["model", "mean score", "pass rate", "mean latency (s)", "USD per 1,000 requests"],
        [(MODEL_NAMES.get(m["model"], m["model"]), _f(m["mean_score"], ".3f"),
          _f(m["pass_rate"], ".1%"), _f(m["latency_seconds_mean"], ".3f"),
          _f(m["cost_per_1k_requests_usd"])) for m in evaluation["models"]]))
    parts.append(_table(["student vs teacher", "prompts"], [
        ("wins", evaluation["student_wins"]), ("ties", evaluation["student_ties"]),
        ("losses", evaluation["student_losses"]),
        ("win rate", _f(evaluation["student_win_rate"], ".1%"))]))
    per_prompt = evaluation["per_prompt"]
    parts.append("<h3>Score distribution per model</h3>")
    if not per_prompt["available"]:
        parts.append(_note(per_prompt["note"]))
    else:
        parts.append(_figure(data, "evaluation_scores", "held-out score histogram per model",
                             per_prompt))
        models = list(per_prompt["histograms"])
        parts.append(_table(["score", *models],
                            [[label, *(per_prompt["histograms"][m][i] for m in models)]
                             for i, label in enumerate(BIN_LABELS)]))
    examples = evaluation.get("examples") or []
    if examples:
        models = sorted({m for ex in examples for m in ex["answers"]}, key=model_order)
        parts.append(f"<h3>Answers to the first {len(examples)} held-out prompts</h3>")
        parts.append(_table(
            ["prompt", "reference", *(f"{m} (score)" for m in models)],
            [[ex["prompt"] or "", ex["reference"] or "",
              *(_answer(ex["answers"].get(m)) for m in models)] for ex in examples],
            numeric=()))
    return "".join(parts)


def _answer(answer: dict[str, Any] | None) -> str:
    if not answer:
        return "\u2014"
    return f"{answer['text'] or ''}  ({_f(answer['score'], '.1f')})"


def _html_cost(data: dict[str, Any]) -> str:
    cost = data["cost"]
    parts = ["<h2>Cost</h2>",
             _figure(data, "cost", "cost by item and cost per 1,000 requests", cost),
             _table(["item", "USD", "detail"],
                    [(line["item"], _f(line["usd"]), line["detail"]) for line in cost["lines"]]
                    + [("accrued by the job", _f(cost["accrued_usd"]), "")], numeric={1})]
    if cost["per_1k_requests"]:
        parts.append(_table(["model", "USD per 1,000 requests", "mean latency (s)"],
                            [(MODEL_NAMES.get(m["model"], m["model"]), _f(m["usd"]),
                              _f(m["latency_seconds_mean"], ".3f"))
                             for m in cost["per_1k_requests"]]))
    return "".join(parts)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { white-space: pre-wrap; max-width: 28em; overflow-wrap: anywhere; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { color: #8a6d3b; background: #fcf8e3; padding: 0.5em 0.8em; border-radius: 4px; }
.verdict { font-weight: 600; } .sub { color: #666; }
"""


def render_html(data: dict[str, Any]) -> str:
    job = data["job"]
    title = job["display_name"] or job["name"]
    facts = [("job", job["name"]), ("state", job["state"]), ("teacher", job["teacher"]),
             ("student", job["student"]), ("judge", job["judge"]),
             ("samples per prompt", job["n_samples"]), ("created", job["created"] or ""),
             ("updated", job["updated"] or ""), ("cost so far (USD)", _f(job["cost_usd"]))]
    if job["promote_alias"]:
        version = job["promoted_alias_version"]
        facts.append(("alias", f"{job['promote_alias']}"
                               + (f" (now version {version})" if version else " (not promoted)")))
    if "error" in job:
        facts.append(("error", f"{job['error']['code']}: {job['error']['message']}"))
    sections = [html_sections(data, _table, _note), _html_training(data),
                _html_candidates(data), _html_evaluation(data), _html_cost(data)]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>Distillation report: {_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Distillation report: {_e(title)}</h1>"
        f"<p class=\"sub\">{_e(job['name'])} · every number on this page is in "
        "<a href=\"report.json\">report.json</a></p>"
        + "".join(f'<p class="note">warning: {_e(w)}</p>' for w in job.get("warnings", ()))
        + _table(["about this job", ""], facts, numeric=())
        + "".join(sections)
        + "</body></html>\n"
    )
