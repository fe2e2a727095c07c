"""The job report's PNG plots (matplotlib, Agg through `Figure`: no pyplot, no global backend).

Each function takes a section of the report's numbers (see report.py) and writes one PNG; the
numbers themselves go into the page's tables and report.json. No user text is drawn: labels are
fixed names ("student", "teacher", ...), so nothing here needs escaping.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

MODEL_COLORS = {"student": "#1f77b4", "base": "#7f7f7f", "teacher": "#ff7f0e"}
CHOSEN_COLOR, REJECTED_COLOR, ALL_COLOR = "#2ca02c", "#d62728", "#bbbbbb"
DPI = 100


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI, facecolor="white")


def _smoothed(values: Sequence[float], window: int) -> list[float]:
    out, total, queue = [], 0.0, []
    for value in values:
        queue.append(value)
        total += value
        if len(queue) > window:
            total -= queue.pop(0)
        out.append(total / len(queue))
    return out


def loss_plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Total loss and its three parts (SFT, preference, KL) over optimizer steps, one panel each
    (their scales differ by orders of magnitude); a moving average over long runs."""
    fig = _figure(10, 6)
    axes = fig.subplots(2, 2, sharex=True)
    parts = (("loss", "total loss L", "#1f77b4"), ("sft_loss", "SFT loss", "#2ca02c"),
             ("preference_loss", "preference loss", "#9467bd"), ("kl_loss", "KL to reference",
                                                                   "#8c564b"))
    for ax, (name, title, color) in zip(axes.flat, parts, strict=True):
        points = [(r["step"], r[name]) for r in rows if r.get(name) is not None]
        steps = [s for s, _ in points]
        values = [v for _, v in points]
        window = max(1, len(values) // 20)
        ax.plot(steps, values, color=color, alpha=0.35 if window > 1 else 1.0, linewidth=1,
                marker="o" if len(values) <= 30 else None, markersize=3)
        if window > 1:
            ax.plot(steps, _smoothed(values, window), color=color, linewidth=2,
                    label=f"moving average ({window} steps)")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    _save(fig, path)


def histogram_plot(labels: Sequence[str], series: Sequence[tuple[str, Sequence[int], str]],
                   path: Path, *, title: str, ylabel: str = "candidates") -> None:
    """Grouped bars: one group per score bin, one bar per series (name, counts, color)."""
    fig = _figure(10, 4.5)
    ax = fig.subplots()
    width = 0.8 / max(1, len(series))
    for i, (name, counts, color) in enumerate(series):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, counts, width=width, label=name, color=color)
    ax.set_xticks(range(len(labels)), labels)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("judge score (0-10)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def _bars(ax, names: Sequence[str], values: Sequence[float | None], *, title: str, fmt: str,
          ylim: float | None = None) -> None:
    shown = [v if v is not None else 0.0 for v in values]
    bars = ax.bar(names, shown, color=[MODEL_COLORS.get(n, "#17becf") for n in names])
    for bar, value in zip(bars, values, strict=True):
        text = "n/a" if value is None else format(value, fmt)
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=9, xytext=(0, 2),
                    textcoords="offset points")
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(0, ylim)
    else:
        ax.set_ylim(0, max([*shown, 1e-9]) * 1.2)
    ax.grid(axis="y", alpha=0.3)


def evaluation_plot(models: Sequence[dict[str, Any]], wins: int, ties: int, losses: int,
                    path: Path) -> None:
    """Mean score and pass rate of each model on the held-out prompts, and the student's
    win/tie/loss against the teacher."""
    names = [m["model"] for m in models]
    has_pass = any(m.get("pass_rate") is not None for m in models)
    fig = _figure(12 if has_pass else 9, 4)
    axes = list(fig.subplots(1, 3 if has_pass else 2))
    _bars(axes[0], names, [m["mean_score"] for m in models], title="mean judge score (0-10)",
          fmt=".2f", ylim=10.5)
    if has_pass:
        _bars(axes[1], names, [m.get("pass_rate") for m in models], title="pass rate",
              fmt=".0%", ylim=1.1)
    ax = axes[-1]
    total = max(1, wins + ties + losses)
    left = 0.0
    for name, count, color in (("win", wins, CHOSEN_COLOR), ("tie", ties, ALL_COLOR),
                               ("loss", losses, REJECTED_COLOR)):
        ax.barh([0], [count / total], left=left, height=0.5, color=color,
                label=f"{name} ({count})")
        if count:
            ax.text(left + count / total / 2, 0, f"{count / total:.0%}", ha="center",
                    va="center", fontsize=9)
        left += count / total
    ax.axvline(0.5, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, 0.5)
    ax.set_yticks([])
    ax.set_xlabel("share of held-out prompts (dashed: parity)")
    ax.set_title("student vs teacher, per prompt")
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    _save(fig, path)


def cost_plot(lines: Sequence[tuple[str, float]], per_1k: Sequence[tuple[str, float]],
              path: Path) -> None:
    """What the job spent, by item; and, after an evaluation, what serving 1,000 requests costs
    with each model."""
    fig = _figure(11 if per_1k else 7, 4)
    axes = list(fig.subplots(1, 2)) if per_1k else [fig.subplots()]
    ax = axes[0]
    names = [name for name, _ in lines]
    values = [usd for _, usd in lines]
    bars = ax.barh(names, values, color="#1f77b4")
    for bar, value in zip(bars, values, strict=True):
        ax.annotate(f"${value:.4f}", (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    va="center", fontsize=9, xytext=(3, 0), textcoords="offset points")
    ax.set_xlim(0, max(values) * 1.35 if any(values) else 1.0)
    ax.invert_yaxis()
    ax.set_xlabel("USD")
    ax.set_title("job cost by item" + ("" if any(values) else " (nothing paid: local models)"))
    ax.grid(axis="x", alpha=0.3)
    if per_1k:
        model_names = [name for name, _ in per_1k]
        _bars(axes[1], model_names, [usd for _, usd in per_1k],
              title="cost per 1,000 requests (USD)", fmt=".4f")
    _save(fig, path)


def traffic_plot(buckets: Sequence[str], series: dict[str, Sequence[int]], path: Path) -> None:
    """The alias page: requests per time bucket, stacked by the target that answered."""
    fig = _figure(11, 4)
    ax = fig.subplots()
    positions = list(range(len(buckets)))
    bottom = [0] * len(buckets)
    for name, counts in series.items():
        ax.bar(positions, counts, bottom=bottom, label=name, width=0.9,
               color=MODEL_COLORS.get(name, "#17becf"))
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    step = max(1, len(buckets) // 8)
    ax.set_xticks(positions[::step], [b[5:16].replace("T", " ") for b in buckets[::step]],
                  fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("requests")
    ax.set_title("requests by target (UTC)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def targets_plot(targets: Sequence[dict[str, Any]], path: Path) -> None:
    """The alias page: each target's median latency, cost per 1,000 requests and validator
    pass rate."""
    names = [t["target"] for t in targets]
    fig = _figure(12, 4)
    axes = fig.subplots(1, 3)
    _bars(axes[0], names, [t["latency_p50_seconds"] for t in targets],
          title="median latency (s)", fmt=".3f")
    _bars(axes[1], names, [t["cost_per_1k_requests_usd"] for t in targets],
          title="cost per 1,000 requests (USD)", fmt=".4f")
    _bars(axes[2], names, [t["validator_pass_rate"] for t in targets],
          title="validator pass rate", fmt=".0%", ylim=1.1)
    _save(fig, path)
