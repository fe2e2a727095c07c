"""The alias page's HTML: `render_alias_html(data)` over the numbers alias_report.py gathers.

Same rules as the job report's page (report_html.py, whose table, note and style it uses):
every cell and user text is escaped, the only markup is this module's own.
"""

from __future__ import annotations

from typing import Any

from services.gateway.report_html import _STYLE, _e, _f, _note, _table

MAX_TRAFFIC_ROWS = 48


def _percent(value: float | None) -> str:
    return "\u2014" if value is None else f"{value:.1%}"


def _figure(data: dict[str, Any], name: str, alt: str) -> str:
    file = data["plots"].get(name)
    return f'<figure><img src="{_e(file)}" alt="{_e(alt)}"></figure>' if file else ""


def _traffic(data: dict[str, Any]) -> str:
    traffic = data["traffic"]
    names = list(traffic["series"])
    rows = [[start, *(traffic["series"][n][i] for n in names)]
            for i, start in enumerate(traffic["buckets"])
            if any(traffic["series"][n][i] for n in names)][-MAX_TRAFFIC_ROWS:]
    per = "hour" if data["window"]["bucket_seconds"] == 3600 else "day"
    return (f"<h2>Traffic per {per}</h2>" + _figure(data, "traffic", "requests per target")
            + (_table(["from (UTC)", *names], rows) if rows else _note("no traffic")))


def _targets(data: dict[str, Any]) -> str:
    rows = [[t["target"], t["requests"], _percent(t["share"]),
             _f(t["latency_p50_seconds"], ".3f"), _f(t["latency_p95_seconds"], ".3f"),
             _f(t["cost_per_1k_requests_usd"]), _percent(t["validator_pass_rate"]),
             _f(t["judge_score"], ".2f"), t["judged"], _f(t["judge_cost_usd"])]
            for t in data["targets"]]
    headers = ["target", "requests", "share", "latency p50 s", "latency p95 s",
               "USD / 1k requests", "validator pass rate", "judge score", "judged",
               "judge USD"]
    return ("<h2>Targets</h2>" + _figure(data, "targets", "latency, cost and pass rate")
            + (_table(headers, rows) if rows else _note("no traffic")))


def _history(data: dict[str, Any]) -> str:
    rows = [[v["version"], v["time"], v["target"], v["reason"]]
            for v in reversed(data["history"])]
    return "<h2>Versions</h2>" + _table(["version", "since (UTC)", "target", "reason"], rows,
                                        numeric=(0,))


def render_alias_html(data: dict[str, Any]) -> str:
    alias, window, totals = data["alias"], data["window"], data["totals"]
    facts = [("alias", alias["name"]), ("version", alias["version"]), ("serves", alias["target"]),
             ("window (UTC)", f"{window['since']} to {window['until']}"),
             ("requests", totals["requests"]), ("teacher fallbacks", totals["fallbacks"]),
             ("fallback rate", _percent(totals["fallback_rate"]))]
    note = f'<p class="note">{_e(data["plots_note"])}</p>' if data.get("plots_note") else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>Alias report: {_e(alias['name'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Alias report: {_e(alias['name'])}</h1>"
        "<p class=\"sub\">every number on this page is in <a href=\"report.json\">report.json"
        "</a></p>" + note
        + _table(["about this alias", ""], facts, numeric=())
        + _traffic(data) + _targets(data) + _history(data)
        + "</body></html>\n"
    )
