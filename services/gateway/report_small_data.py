"""The report's small-data sections (issue 23): what prompt expansion did (seed vs generated
prompts, each filter's drops, examples) and, for a teacher committee, how often each teacher's
candidate won its prompt and its share of the teacher cost. Data for report.json, and the HTML.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from distill.v1 import gateway_pb2
from services.common.storage import ArtifactStore

OUTCOMES = (("kept", "added to the training set"),
            ("duplicate", "near-duplicate of a seed or of a prompt kept before (MinHash/LSH)"),
            ("contaminated", "shares a word n-gram with the held-out split"),
            ("judge", "refused by the expansion's judge"),
            ("empty", "the reply held no prompt"))

Rows = Callable[[ArtifactStore, str], Iterator[dict[str, Any]]]
Table = Callable[..., str]


def expansion_section(job: gateway_pb2.Job) -> dict[str, Any]:
    if not job.spec.expansion.target_prompts:
        return {"available": False, "enabled": False,
                "note": "prompt expansion was off (spec.expansion)"}
    if not job.HasField("expansion"):
        return {"available": False, "enabled": True,
                "note": "prompt expansion has not finished"}
    s = job.expansion
    dropped = {"duplicate": s.dropped_duplicates, "contaminated": s.dropped_contaminated,
               "judge": s.dropped_by_judge, "empty": s.dropped_empty}
    return {
        "available": True, "enabled": True, "seed_prompts": s.seed_prompts,
        "generated": s.generated, "target_prompts": s.target_prompts,
        "requested": s.requested, "rounds": s.rounds,
        "dropped": dropped,
        # replies that passed every filter after the target was already reached
        "not_needed": s.requested - s.generated - sum(dropped.values()),
        "examples": [{"prompt": e.prompt, "outcome": e.outcome, "detail": e.detail}
                     for e in s.examples],
    }


def committee_section(job: gateway_pb2.Job, store: ArtifactStore,
                      read_rows: Rows) -> dict[str, Any]:
    """Per teacher: candidates written, prompts where its candidate ranked first (won), chosen
    candidates, and what its candidates cost when made (also those later served from the
    cache) with its share of the whole."""
    if len(job.spec.committee) < 2:
        return {"available": False, "note": "one teacher (no committee)"}
    if not job.outputs.candidates.uri or not job.outputs.curated.uri:
        return {"available": False, "note": "generation and judging have not finished"}
    who: dict[tuple[str, int], str] = {}
    written, cost = Counter(), Counter()
    for group in read_rows(store, job.outputs.candidates.uri):
        for c in group.get("candidates", []):
            teacher = c.get("teacher", "")
            who[(c.get("prompt_id", ""), int(c.get("sample_index", 0)))] = teacher
            written[teacher] += 1
            cost[teacher] += float(c.get("original_cost_usd", 0.0))
    won, chosen = Counter(), Counter()
    prompts = 0
    for row in read_rows(store, job.outputs.curated.uri):
        prompt_id = row.get("prompt", {}).get("id", "")
        entries = row.get("chosen") or []
        if not entries:
            continue
        prompts += 1
        won[who.get((prompt_id, int(entries[0].get("sample_index", 0))), "")] += 1
        for entry in entries:
            chosen[who.get((prompt_id, int(entry.get("sample_index", 0))), "")] += 1
    total_cost = sum(cost.values())
    teachers = [{"teacher": t, "candidates": written[t], "won": won[t],
                 "won_share": won[t] / prompts if prompts else None, "chosen": chosen[t],
                 "cost_usd": cost[t],
                 "cost_share": cost[t] / total_cost if total_cost else None}
                for t in written]
    return {"available": True, "prompts": prompts, "teachers": teachers}


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def html_sections(data: dict[str, Any], table: Table, note: Callable[[str], str]) -> str:
    """The two sections' HTML; `table` and `note` are report_html's (escaping included)."""
    parts = []
    expansion = data["expansion"]
    if expansion["available"]:
        dropped = expansion["dropped"]
        parts += ["<h2>Prompt expansion</h2>",
                  f"<p>{expansion['seed_prompts']:,} seed prompts grown to "
                  f"{expansion['seed_prompts'] + expansion['generated']:,} (target "
                  f"{expansion['target_prompts']:,}) with {expansion['requested']:,} teacher "
                  f"calls in {expansion['rounds']} round(s).</p>",
                  table(["prompts", "count"], [
                      ("seed (the dataset less the held-out split)", expansion["seed_prompts"]),
                      ("generated and kept", expansion["generated"]),
                      ("dropped: near-duplicates", dropped["duplicate"]),
                      ("dropped: overlap with the held-out split", dropped["contaminated"]),
                      ("dropped: refused by the judge", dropped["judge"]),
                      ("dropped: empty replies", dropped["empty"]),
                      ("not needed (target reached)", expansion["not_needed"])], numeric={1})]
        if expansion["examples"]:
            names = dict(OUTCOMES)
            parts.append(table(["outcome", "generated prompt", "why"], [
                (names.get(e["outcome"], e["outcome"]), e["prompt"], e["detail"])
                for e in expansion["examples"]], numeric=()))
    elif expansion["enabled"]:
        parts += ["<h2>Prompt expansion</h2>", note(expansion["note"])]
    committee = data["committee"]
    if committee["available"]:
        parts += ["<h2>Teacher committee</h2>",
                  f"<p>Which teacher wrote the best candidate of each of "
                  f"{committee['prompts']:,} kept prompts, and what each teacher's candidates "
                  "cost.</p>",
                  table(["teacher", "candidates", "won (ranked first)", "won share",
                         "chosen", "cost (USD)", "cost share"],
                        [(t["teacher"], t["candidates"], t["won"], _share(t["won_share"]),
                          t["chosen"], f"{t['cost_usd']:.4f}", _share(t["cost_share"]))
                         for t in committee["teachers"]], numeric=range(1, 7))]
    return "".join(parts)

