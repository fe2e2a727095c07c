"""Small datasets end to end (issue 23), on the whole suite: an expanded job (the teacher behind
the fake OpenAI-compatible server writes the new prompts) and a two-teacher committee (the fake
server and the offline SmolLM2 GGUF in the generator). Both jobs are followed until their
curated set is written (expansion, generation and judging done), then cancelled: training and
export are covered elsewhere."""

from __future__ import annotations

import json

import pytest

from distill.v1 import common_pb2, gateway_pb2
from services.common.datasets import parse_jsonl, split_holdout
from services.common.models import SMOLLM2_GGUF_FILE
from tests.e2e.conftest import TEACHER_KEY_ENV
from tests.e2e.test_pipeline import wait_for

pytestmark = pytest.mark.slow  # the whole suite starts for each: over 30 s
State = gateway_pb2
SEEDS = ["Review: I loved it, the colour is lovely. Sentiment?",
         "Review: It broke on the second day of use. Sentiment?",
         "Review: Does what it says and nothing more. Sentiment?",
         "Review: Shipping was quick and the box was intact. Sentiment?"]
NEW = ["Review: The kettle boils fast but the whistle is loud. Sentiment?",
       "Review: My daughter wears these boots every single day. Sentiment?",
       "Review: Tastes stale, as if it sat in a warehouse for years. Sentiment?"]
HOLDOUT = 0.25


def fake_teacher(suite, **kw) -> common_pb2.ModelSpec:
    return common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                base_url=suite.fake.openai_base_url,
                                api_key_env=TEACHER_KEY_ENV, **kw)


def dataset(suite, tmp_path) -> common_pb2.ArtifactRef:
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "response": "positive"}) + "\n"
                            for p in SEEDS))
    return suite.client.upload(path)


def job_spec(suite, data, **fields) -> gateway_pb2.DistillSpec:
    # A judge every answer passes: these tests are about which prompts and teachers, not labels.
    spec = gateway_pb2.DistillSpec(
        dataset=data, student_model="tiny", eval=gateway_pb2.EvalSettings(
            holdout_fraction=HOLDOUT), **fields)
    spec.judge.judge.length.min_chars = 1
    spec.judge.top_k = 1
    spec.training.max_steps, spec.training.batch_size = 2, 2
    return spec


def curated_then_cancelled(suite, name: str) -> gateway_pb2.Job:
    """The job once its curated set is written (training has begun), then cancelled."""
    reached = wait_for(suite, name, {State.JOB_STATE_TRAINING, State.JOB_STATE_EXPORTING,
                                     State.JOB_STATE_EVALUATING, State.JOB_STATE_SUCCEEDED,
                                     State.JOB_STATE_FAILED})
    suite.client.cancel(name)
    assert reached.outputs.curated.uri, f"{reached.error}\n{suite.logs()}"
    return reached


def test_an_expanded_job_adds_filtered_teacher_prompts_and_pays_for_them_once(
        suite, tmp_path, tiny_llama_dir):
    held_out = split_holdout(parse_jsonl("".join(
        json.dumps({"prompt": p}) + "\n" for p in SEEDS)), HOLDOUT, seed=0)[1]
    (held,) = [p.messages[0].content for p in held_out]
    train = [p for p in SEEDS if p != held]
    # The fake answers the expansion calls with these, round robin. Round 1 asks for the 4
    # missing prompts and half again (6 calls) and gets each once: a copy of the held-out prompt
    # (contaminated), a seed again (duplicate), three new ones (kept), one the judge refuses.
    # Rounds 2-4 ask for the last one (2 calls each) and get only repeats: contaminated and
    # duplicate (2), duplicates of the kept (3), a duplicate and the refused one again (4).
    off_task = "Write a short poem about cheese."
    suite.fake.configure(replies=[held, f"\"{train[0]}\"", *NEW, off_task])
    expansion = gateway_pb2.ExpansionSettings(target_prompts=7)
    expansion.judge.regex.pattern = r"Sentiment\?$"
    spec = job_spec(suite, dataset(suite, tmp_path), teacher=fake_teacher(suite, max_tokens=32),
                    n_samples=2, expansion=expansion)
    spec.student_model = str(tiny_llama_dir)
    job = suite.client.distill(spec)
    reached = curated_then_cancelled(suite, job.name)

    stats = reached.expansion
    assert (stats.seed_prompts, stats.target_prompts, stats.requested, stats.rounds) == (
        3, 7, 6 + 2 + 2 + 2, 4)
    assert (stats.generated, stats.dropped_contaminated, stats.dropped_duplicates,
            stats.dropped_by_judge, stats.dropped_empty) == (3, 2, 6, 1, 0)
    examples = {(e.outcome, e.prompt) for e in stats.examples}  # the first 3 of each
    # (the seed's copy came in quotes: they were stripped before the duplicate check)
    assert {("contaminated", held), ("duplicate", train[0]), ("judge", off_task)} <= examples
    assert {("kept", p) for p in NEW} <= examples
    rows = list(suite.client.read_jsonl(reached.outputs.expanded_dataset.uri))
    assert [r["prompt"] for r in rows[:3]] == train and sorted(r["prompt"] for r in rows[3:]) \
        == sorted(NEW)
    assert all("response" not in r and r["source"] == "expansion" for r in rows[3:])
    groups = list(suite.client.candidates(job.name))
    assert len(groups) == 6 and all(len(g["candidates"]) == 2 for g in groups)
    generated = [g["prompt"] for g in groups if g["prompt"].get("metadata")]
    assert len(generated) == 3 and not any("reference" in p for p in generated)
    # The expansion calls are in the job's spend: 12 calls, then 6 generation calls (n = 2).
    assert suite.fake.stats()["completed"] == 12 + 6
    assert reached.teacher_usage.requests == 12 + 6 and reached.cost_usd > 0

    # The same job again asks the teacher nothing until training: every expansion call and
    # every sample comes from the teacher cache.
    before = suite.fake.stats()["received"]
    again = suite.client.distill(spec)
    second = curated_then_cancelled(suite, again.name)
    assert second.expansion.generated == 3
    assert suite.fake.stats()["received"] == before
    assert second.teacher_usage.cost_usd == 0


def test_a_two_teacher_committee_of_the_fake_server_and_the_local_gguf(suite, tmp_path,
                                                                     tiny_llama_dir):
    # The fake teacher rambles past the judge's 100 characters; SmolLM2 (8 tokens) cannot.
    suite.fake.configure(replies=["positive " * 30])
    spec = job_spec(suite, dataset(suite, tmp_path), committee=[
        common_pb2.CommitteeMember(teacher=fake_teacher(suite, max_tokens=64), n_samples=2),
        common_pb2.CommitteeMember(teacher=common_pb2.ModelSpec(
            provider=common_pb2.PROVIDER_LOCAL, model="smollm2-135m-gguf", max_tokens=8),
            n_samples=2)])
    spec.judge.judge.length.max_chars = 100
    spec.judge.min_score = 5  # a prompt where SmolLM2 said nothing at all is dropped
    spec.student_model = str(tiny_llama_dir)
    job = suite.client.distill(spec)
    reached = curated_then_cancelled(suite, job.name)

    groups = list(suite.client.candidates(job.name))
    assert len(groups) == 3  # the 4 seeds less the held-out one
    for group in groups:
        teachers = sorted((c.get("sample_index", 0), c["teacher"]) for c in group["candidates"])
        assert teachers == [(0, "gpt-4o-mini"), (1, "gpt-4o-mini"), (2, SMOLLM2_GGUF_FILE),
                            (3, SMOLLM2_GGUF_FILE)]
    by_prompt = {g["prompt"]["id"]: g for g in groups}
    curated = list(suite.client.read_jsonl(reached.outputs.curated.uri))
    assert curated, reached.judge_statistics
    for row in curated:  # one ranking over all four candidates: the local teacher's won
        best = row["chosen"][0]
        assert best["sample_index"] in (2, 3) and len(best["text"]) <= 100
        assert {c.get("sample_index", 0) for c in by_prompt[row["prompt"]["id"]]["candidates"]} \
            == {0, 1, 2, 3}
    # Only the fake server's calls cost money; the local teacher's cost nothing.
    assert suite.fake.stats()["completed"] == 3
    assert reached.teacher_usage.cost_usd > 0
