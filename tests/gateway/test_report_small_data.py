"""The report's small-data sections from a synthetic job and its artifacts in a real store:
prompt expansion (seed vs generated, each filter's drops, examples, escaped) and the teacher
committee (wins, chosen candidates and cost share per teacher)."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from distill.v1 import common_pb2, gateway_pb2
from services.common.storage import LocalStore
from services.gateway.report import write_report

EVIL = "<script>alert('x')</script>"


def committee_job(store) -> gateway_pb2.Job:
    """Four prompts, each answered twice by gpt-4o-mini and twice by a local GGUF; the local
    teacher's first answer wins three prompts."""
    job = gateway_pb2.Job(name="jobs/abc123", state=gateway_pb2.JOB_STATE_SUCCEEDED)
    for model, n in (("gpt-4o-mini", 2), ("smollm2-135m-gguf", 2)):
        job.spec.committee.add(teacher=common_pb2.ModelSpec(model=model), n_samples=n)
    groups, curated = [], []
    for p in range(4):
        group = common_pb2.CandidateGroup(prompt=common_pb2.Prompt(id=f"line-{p}"))
        for i in range(4):
            api = i < 2
            group.candidates.add(prompt_id=f"line-{p}", sample_index=i,
                                 teacher="gpt-4o-mini" if api else "smollm2.gguf",
                                 original_cost_usd=0.003 if api else 0.0,
                                 usage=common_pb2.Usage(cost_usd=0.003 if api else 0.0))
        groups.append(json_format.MessageToDict(group, preserving_proto_field_name=True))
        best = 0 if p == 0 else 2
        curated.append({"prompt": {"id": f"line-{p}"},
                        "chosen": [{"sample_index": best, "score": 10.0},
                                   {"sample_index": 1, "score": 8.0}],
                        "rejected": [], "pairs": []})
    for name, rows in (("candidates", groups), ("curated", curated)):
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        ref = store.put_bytes(f"jobs/abc123/{name}.jsonl", data, media_type="application/jsonl")
        getattr(job.outputs, name).CopyFrom(ref.as_proto())
    return job


def test_the_committee_section_counts_wins_and_cost_share(tmp_path):
    store = LocalStore(tmp_path / "store")
    data = write_report(committee_job(store), store, tmp_path / "out")
    committee = data["committee"]
    assert committee["available"] and committee["prompts"] == 4
    by = {t["teacher"]: t for t in committee["teachers"]}
    assert (by["gpt-4o-mini"]["won"], by["smollm2.gguf"]["won"]) == (1, 3)
    assert by["smollm2.gguf"]["won_share"] == 0.75
    assert (by["gpt-4o-mini"]["chosen"], by["smollm2.gguf"]["chosen"]) == (5, 3)
    assert by["gpt-4o-mini"]["cost_usd"] == pytest.approx(8 * 0.003)
    assert by["gpt-4o-mini"]["cost_share"] == 1
    assert by["smollm2.gguf"]["cost_share"] == 0 and by["smollm2.gguf"]["candidates"] == 8
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<h2>Teacher committee</h2>" in page and "75%" in page
    assert json.loads((tmp_path / "out" / "report.json").read_text())["committee"] == committee


def test_one_teacher_has_no_committee_section(tmp_path):
    store = LocalStore(tmp_path / "store")
    job = gateway_pb2.Job(name="jobs/abc123", spec=gateway_pb2.DistillSpec(
        teacher=common_pb2.ModelSpec(model="gpt-4o-mini")))
    data = write_report(job, store, tmp_path / "out")
    assert not data["committee"]["available"] and not data["expansion"]["available"]
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Teacher committee" not in page and "Prompt expansion" not in page


def test_the_expansion_section_shows_counts_and_escaped_examples(tmp_path):
    store = LocalStore(tmp_path / "store")
    job = gateway_pb2.Job(name="jobs/abc123")
    job.spec.expansion.target_prompts = 20
    job.expansion.CopyFrom(gateway_pb2.ExpansionStatistics(
        seed_prompts=8, target_prompts=20, requested=24, rounds=2, generated=12,
        dropped_duplicates=5, dropped_contaminated=2, dropped_by_judge=3, dropped_empty=1,
        examples=[gateway_pb2.ExpansionExample(prompt=EVIL, outcome="kept"),
                  gateway_pb2.ExpansionExample(prompt="What is 2 + 2?", outcome="contaminated",
                                               detail="shares 'what is 2 + 2 ?'")]))
    data = write_report(job, store, tmp_path / "out")
    expansion = data["expansion"]
    assert expansion["available"] and expansion["seed_prompts"] == 8
    assert expansion["dropped"] == {"duplicate": 5, "contaminated": 2, "judge": 3, "empty": 1}
    assert expansion["not_needed"] == 24 - 12 - 11
    page = (tmp_path / "out" / "index.html").read_text()
    assert "8 seed prompts grown to 20 (target 20) with 24 teacher calls in 2 round(s)" in page
    assert EVIL not in page and "&lt;script&gt;" in page
    assert "shares a word n-gram with the held-out split" in page


def test_an_expansion_that_did_not_finish_says_so(tmp_path):
    store = LocalStore(tmp_path / "store")
    job = gateway_pb2.Job(name="jobs/abc123", state=gateway_pb2.JOB_STATE_FAILED)
    job.spec.expansion.target_prompts = 20
    write_report(job, store, tmp_path / "out")
    assert "not available: prompt expansion has not finished" in (
        tmp_path / "out" / "index.html").read_text()
