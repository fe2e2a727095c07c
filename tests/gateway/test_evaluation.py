"""The evaluation's plain parts: the held-out split, the summary numbers and the gate."""

from __future__ import annotations

import json

import pytest

from distill.v1 import common_pb2, gateway_pb2
from services.common import errors
from services.common.datasets import load_dataset, parse_jsonl
from services.common.specs.distill import eval_spec
from services.common.storage import LocalStore
from services.gateway import evaluation
from services.gateway.evaluation import Answer


def _dataset(store, count, *, crlf=False):
    end = "\r\n" if crlf else "\n"
    rows = [json.dumps({"prompt": f"q{i}", "response": str(i)}) for i in range(count)]
    data = ("\ufeff" + end.join(rows[:3]) + end + end + end.join(rows[3:]) + end).encode()
    return store.put_bytes("datasets/d.jsonl", data).as_proto()


def _spec(dataset, **eval_fields):
    return gateway_pb2.DistillSpec(dataset=dataset, eval=gateway_pb2.EvalSettings(**eval_fields))


def test_fraction_split_keeps_the_users_lines_disjoint_and_seeded(tmp_path):
    store = LocalStore(tmp_path)
    spec = _spec(_dataset(store, 20, crlf=True), holdout_fraction=0.25, seed=7)
    prompts = load_dataset(store, spec.dataset)  # parsed once, by preflight
    train, held = evaluation.split(store, "j1", spec, prompts)
    train_rows = parse_jsonl(store.get_bytes(store.key_from_uri(train.uri)))
    held_rows = parse_jsonl(store.get_bytes(store.key_from_uri(held.uri)))
    assert (len(train_rows), len(held_rows)) == (15, 5)
    texts = {p.messages[0].content for p in train_rows} | {p.messages[0].content
                                                           for p in held_rows}
    assert texts == {f"q{i}" for i in range(20)}
    assert all(p.reference == p.messages[0].content[1:] for p in held_rows)
    again = evaluation.split(store, "j2", spec, prompts)
    assert again[1].sha256 == held.sha256
    other = evaluation.split(store, "j3", _spec(spec.dataset, holdout_fraction=0.25, seed=8),
                             prompts)
    assert other[1].sha256 != held.sha256


def test_a_given_held_out_set_leaves_the_dataset_whole(tmp_path):
    store = LocalStore(tmp_path)
    dataset = _dataset(store, 4)
    held = store.put_bytes("datasets/h.jsonl", b'{"prompt": "x"}\n').as_proto()
    spec = _spec(dataset, held_out=held)
    assert evaluation.split(store, "j", spec, load_dataset(store, dataset)) == (dataset, held)
    assert evaluation.enabled(spec)


@pytest.mark.parametrize("fields, enabled", [
    ({}, True), ({"holdout_fraction": 0.2}, True), ({"holdout_fraction": 0.0}, False)])
def test_evaluation_is_on_by_default(fields, enabled):
    assert evaluation.enabled(_spec(common_pb2.ArtifactRef(uri="x"), **fields)) is enabled


@pytest.mark.parametrize("fields, count, fragment", [
    ({"holdout_fraction": 0.9}, 10, "spec.eval.holdout_fraction: must be in [0, 0.5]"),
    ({"holdout_fraction": 0.1}, 1, "needs at least 2"),
    ({"promote_min_ratio": -1}, 10, "spec.eval.promote_min_ratio"),
    ({"promote_min_ratio": float("nan")}, 10, "spec.eval.promote_min_ratio"),
    ({"promote_min_pass_rate": 1.5}, 10, "spec.eval.promote_min_pass_rate: must be in [0, 1]"),
    ({"promote_min_pass_rate": float("nan")}, 10, "spec.eval.promote_min_pass_rate"),
])
def test_bad_eval_settings_name_the_field(tmp_path, fields, count, fragment):
    store = LocalStore(tmp_path)
    spec = _spec(_dataset(store, count), **fields)
    prompts = parse_jsonl(store.get_bytes(store.key_from_uri(spec.dataset.uri)))
    with pytest.raises(errors.InvalidArgument, match=fragment.replace("[", r"\[")):
        evaluation.check(eval_spec(spec.eval), prompts, store)


def test_missing_held_out_dataset_is_not_found(tmp_path):
    store = LocalStore(tmp_path)
    spec = _spec(_dataset(store, 4), held_out=common_pb2.ArtifactRef(uri=store.uri("d/x.jsonl")))
    with pytest.raises(errors.NotFound, match=r"spec\.eval\.held_out"):
        evaluation.check(eval_spec(spec.eval), [], store)


def _rows(triples, latency=0.5, cost=0.002):
    return [{m: Answer(m, latency, cost, score, None if score is None else score == 10)
             for m, score in zip(evaluation.MODELS, triple, strict=True)} for triple in triples]


def test_summary_scores_pass_rates_wins_and_costs():
    rows = _rows([(10, 10, 0), (10, 0, 0), (0, 10, 10), (10, None, 0)])
    result = evaluation.summarise(rows, serving_usd_per_hour=3.6, local_teacher=False)
    models = {m.model: m for m in result.models}
    assert result.prompts == 4
    assert models["teacher"].mean_score == pytest.approx(7.5)
    assert models["student"].mean_score == pytest.approx(20 / 3)  # the unscored one left out
    assert models["base"].pass_rate == pytest.approx(0.25)
    # one win, one tie, one loss; the unscored prompt is not compared
    assert (result.student_wins, result.student_ties, result.student_losses) == (1, 1, 1)
    assert result.student_win_rate == pytest.approx(0.5)
    assert models["teacher"].cost_per_1k_requests_usd == pytest.approx(2.0)  # 0.002 USD x 1000
    # 0.5 s a request at 3.6 USD/h: 1000 * 0.5 / 3600 * 3.6
    assert models["student"].cost_per_1k_requests_usd == pytest.approx(0.5)
    local = evaluation.summarise(rows, serving_usd_per_hour=3.6, local_teacher=True)
    assert local.models[0].cost_per_1k_requests_usd == pytest.approx(0.5)


@pytest.mark.parametrize("student, teacher, ratio, passed", [
    (9.5, 10, 0.95, True), (9.4, 10, 0.95, False), (3, 0, 0.95, True), (0, 0, 0.95, True),
    (0, 5, 0.0, True), (10, 5, 2.0, True), (9.9, 5, 2.0, False)])
def test_gate(student, teacher, ratio, passed):
    result = gateway_pb2.Evaluation(prompts=10, models=[
        gateway_pb2.ModelEvaluation(model="teacher", mean_score=teacher),
        gateway_pb2.ModelEvaluation(model="student", mean_score=student)])
    ok, reason = evaluation.gate(result, ratio)
    assert ok is passed
    assert reason.startswith("passed" if passed else "below")
    assert f"student {student:.2f} vs teacher {teacher:.2f} on 10 held-out prompts" in reason
    assert f"{ratio:.0%} required" in reason


def _evaluation(student_rate, teacher_rate, floor, student=9.0, teacher=9.0):
    return gateway_pb2.Evaluation(prompts=20, min_pass_rate=floor, models=[
        gateway_pb2.ModelEvaluation(model="teacher", mean_score=teacher, pass_rate=teacher_rate),
        gateway_pb2.ModelEvaluation(model="student", mean_score=student, pass_rate=student_rate)])


def test_the_floor_is_on_by_default_only_where_rows_have_references(tmp_path):
    spec = _spec(common_pb2.ArtifactRef(uri="x"))
    assert evaluation.min_pass_rate(spec, references=True) == 0.5
    assert evaluation.min_pass_rate(spec, references=False) == 0.0
    off = _spec(common_pb2.ArtifactRef(uri="x"), promote_min_pass_rate=0)
    assert evaluation.min_pass_rate(off, references=True) == 0.0
    strict = _spec(common_pb2.ArtifactRef(uri="x"), promote_min_pass_rate=0.8)
    assert evaluation.min_pass_rate(strict, references=False) == 0.8


def test_a_student_of_a_poor_teacher_is_below_the_floor_and_the_teacher_is_named():
    # At parity with its teacher (the ratio passes) but both right on 25 % and 29 % of prompts.
    result = _evaluation(student_rate=0.25, teacher_rate=0.29, floor=0.5, student=2.5,
                         teacher=2.5)
    passed, reason = evaluation.gate(result, 0.95)
    assert not passed
    assert reason.startswith("below the eval gate's floor")
    assert "the student gets 25 % right (50 % required)" in reason
    warning = evaluation.teacher_warning(result)
    assert warning.startswith("the teacher gets 29 % of these right — a student cannot learn "
                              "the task from it")


def test_the_floor_passes_a_good_student_and_is_silent_about_a_good_teacher():
    result = _evaluation(student_rate=0.9, teacher_rate=0.55, floor=0.5)
    passed, reason = evaluation.gate(result, 0.95)
    assert passed and "the student gets 90 % right (50 % required)" in reason
    assert evaluation.teacher_warning(result) is None
    assert evaluation.teacher_warning(_evaluation(0.1, 0.1, floor=0.0)) is None


def test_a_graded_judge_without_pass_rate_uses_the_mean_score_share():
    result = gateway_pb2.Evaluation(prompts=4, min_pass_rate=0.5, models=[
        gateway_pb2.ModelEvaluation(model="teacher", mean_score=3.0),
        gateway_pb2.ModelEvaluation(model="student", mean_score=3.0)])
    assert evaluation.gate(result, 0.95)[0] is False
    assert "the teacher gets 30 % of these right" in evaluation.teacher_warning(result)
