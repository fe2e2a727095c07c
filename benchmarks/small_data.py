"""Small datasets (issue 23): does prompt expansion help a student distilled from 10 prompts?

On each bundled task (review sentiment, addition) the whole suite runs jobs from the first 10
training prompts: without expansion, and with expansion to `--target` prompts, the same training
steps, for each seed. The offline SmolLM2-135M GGUF is the teacher (few-shot system prompt for
sentiment, as in the demo), SmolLM2-135M the student; the bundled held-out file is the held-out
split (so the contamination check runs against it).

Expanded prompts have no reference answer, so the job's judge checks the answer's form (a label;
a number), the same judge in both arms. The held-out score is measured here, from the job's
evaluation rows: the share of held-out prompts whose student answer has the reference label
(sentiment) or number (addition), by the label rule of the reference judge.

    .venv/bin/python -m benchmarks.small_data [--tasks sentiment addition] [--seeds 0 1 2]
        [--target 100] [--steps 40] [--expansion-only]

`--expansion-only` runs only the expansion arm's first stage and cancels each job once its
prompts are written: the filters' counts and examples, without the hours of CPU training.

Prints a table and ends with one `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.result import emit
from distill.client import Distiller
from distill.local_suite import LocalSuite, consecutive_ports
from distill.v1 import common_pb2, gateway_pb2
from services.common.answer_checks import first_label

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEED_PROMPTS = 10
TASKS = {
    # (system prompt file or "", regex the answer's form must match)
    "sentiment": ("system_prompt.txt", r"^\W*(positive|negative)\b"),
    "addition": ("", r"^\s*-?\d+\s*\.?\s*$"),
}


def seed_file(task: str, home: Path) -> Path:
    lines = (EXAMPLES / task / "train.jsonl").read_text(encoding="utf-8").splitlines()
    path = home / f"{task}-seeds.jsonl"
    path.write_text("\n".join(lines[:SEED_PROMPTS]) + "\n", encoding="utf-8")
    return path


def job_spec(client: Distiller, task: str, home: Path, *, seed: int, target: int,
             steps: int) -> gateway_pb2.DistillSpec:
    prompt_file, form = TASKS[task]
    system_prompt = (EXAMPLES / task / prompt_file).read_text(encoding="utf-8").strip() \
        if prompt_file else ""
    spec = client.spec(
        dataset=client.upload(seed_file(task, home)),
        teacher=common_pb2.ModelSpec(provider=common_pb2.PROVIDER_LOCAL,
                                     model="smollm2-135m-gguf", temperature=0.8, max_tokens=16),
        student="smollm2-135m", judge=common_pb2.JudgeSpec(regex=common_pb2.RegexJudge(
            pattern=form)), n_samples=4, top_k=2, min_score=5, system_prompt=system_prompt,
        display_name=f"small data: {task}, seed {seed}, target {target or 'none'}",
        training={"max_steps": steps, "batch_size": 4, "learning_rate": 3e-4,
                  "max_seq_length": 128, "checkpoint_interval": steps, "seed": seed},
        export={"quantizations": ["QUANTIZATION_TYPE_Q4_K_M"]},
        eval={"held_out": {"uri": client.upload(EXAMPLES / task / "heldout.jsonl").uri},
              "promote_min_ratio": 0, "promote_min_pass_rate": 0})
    if target:
        spec.expansion.target_prompts = target
        spec.expansion.seed = seed
    return spec


def held_out_score(client: Distiller, job: gateway_pb2.Job) -> dict[str, float]:
    """Per model, the share of held-out prompts answered with the reference label/number."""
    rows = list(client.read_jsonl(job.outputs.evaluation.uri))
    return {model: sum(first_label(r["answers"][model]["text"]) == first_label(r["reference"])
                       for r in rows) / len(rows)
            for model in ("student", "base", "teacher")}


def run(client: Distiller, task: str, home: Path, *, seed: int, target: int,
        steps: int) -> dict:
    started = time.monotonic()
    job = client.distill(job_spec(client, task, home, seed=seed, target=target, steps=steps))
    final = client.wait(job.name, timeout=6 * 3600)
    if final.state != gateway_pb2.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"{task} seed {seed} target {target}: {final.error}")
    scores = held_out_score(client, final)
    stats = final.expansion
    row = {"task": task, "seed": seed, "expanded_to": target or SEED_PROMPTS,
           "student": scores["student"], "base": scores["base"], "teacher": scores["teacher"],
           "prompts_kept": final.judge_statistics.prompts_kept,
           "minutes": round((time.monotonic() - started) / 60, 1)}
    if target:
        row.update(generated=stats.generated, requested=stats.requested,
                   dropped_contaminated=stats.dropped_contaminated,
                   dropped_duplicates=stats.dropped_duplicates, dropped_empty=stats.dropped_empty,
                   rounds=stats.rounds,
                   kept_examples=[e.prompt for e in stats.examples if e.outcome == "kept"])
    print(json.dumps(row), flush=True)
    return row


def expansion_only(client: Distiller, task: str, home: Path, *, seed: int, target: int) -> dict:
    """The expansion stage of one job: its statistics once it is done, then the job cancelled."""
    started = time.monotonic()
    job = client.distill(job_spec(client, task, home, seed=seed, target=target, steps=1))
    for snapshot in client.watch(job.name):
        if snapshot.HasField("expansion") or snapshot.state in (
                gateway_pb2.JOB_STATE_FAILED, gateway_pb2.JOB_STATE_CANCELLED):
            break
    client.cancel(job.name)
    if not snapshot.HasField("expansion"):
        raise SystemExit(f"{task} seed {seed}: {snapshot.error}")
    stats = snapshot.expansion
    row = {"task": task, "seed": seed, "seed_prompts": stats.seed_prompts,
           "target": stats.target_prompts, "generated": stats.generated,
           "requested": stats.requested, "rounds": stats.rounds,
           "dropped_contaminated": stats.dropped_contaminated,
           "dropped_duplicates": stats.dropped_duplicates, "dropped_empty": stats.dropped_empty,
           "teacher_calls_cost_usd": snapshot.teacher_usage.cost_usd,
           "examples": [(e.outcome, e.prompt, e.detail) for e in stats.examples],
           "minutes": round((time.monotonic() - started) / 60, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--target", type=int, default=100)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--port", type=int, default=50251,
                        help="first of the suite's six ports")
    parser.add_argument("--expansion-only", action="store_true",
                        help="only the expansion stage of the expanded arm (no training)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="distill-small-data-"))
    env = {"DISTILL_STORE_URL": f"file://{home / 'artifacts'}",
           "DISTILL_GATEWAY_DB_PATH": str(home / "gateway.db"), "PYTHONUNBUFFERED": "1"}
    suite = LocalSuite(log_dir=home / "logs", env={**os.environ, **env},
                       ports=consecutive_ports(args.port))
    suite.start(timeout=300)
    rows = []
    try:
        with Distiller(suite.address("gateway"), timeout=600) as client:
            for task in args.tasks:
                for seed in args.seeds:
                    if args.expansion_only:
                        rows.append(expansion_only(client, task, home, seed=seed,
                                                   target=args.target))
                        continue
                    for target in (0, args.target):
                        rows.append(run(client, task, home, seed=seed, target=target,
                                        steps=args.steps))
    finally:
        suite.stop()
    if args.expansion_only:
        emit("small_data", {"expansion_only": rows, "target": args.target, "seeds": args.seeds})
        return
    summary = {}
    for task in args.tasks:
        for target in (0, args.target):
            mine = [r["student"] for r in rows if r["task"] == task and r["expanded_to"] == (
                target or SEED_PROMPTS)]
            summary[f"{task}/{target or SEED_PROMPTS}"] = {
                "student_mean": statistics.fmean(mine), "student_runs": mine}
        summary[f"{task}/contaminated_dropped"] = [
            r.get("dropped_contaminated") for r in rows if r["task"] == task and "generated" in r]
    for key, value in summary.items():
        print(f"{key:32} {value}")
    emit("small_data", {"summary": summary, "runs": rows, "steps": args.steps,
                        "target": args.target, "seeds": args.seeds})


if __name__ == "__main__":
    main()
