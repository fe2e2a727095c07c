"""Teacher committees in the spec layer: the committee of one, member numbering and labels, and
refusals that name the field."""

from __future__ import annotations

import pytest

from distill.v1 import common_pb2, gateway_pb2
from services.common.errors import InvalidArgument
from services.common.specs.committee import lead_teacher
from services.common.specs.distill import distill_plan


def spec(**kw) -> gateway_pb2.DistillSpec:
    s = gateway_pb2.DistillSpec(dataset=common_pb2.ArtifactRef(uri="file:///d.jsonl"),
                                student_model="smollm2-135m", **kw)
    s.judge.judge.length.min_chars = 1
    return s


def member(model, n, **kw) -> common_pb2.CommitteeMember:
    return common_pb2.CommitteeMember(teacher=common_pb2.ModelSpec(model=model, **kw),
                                      n_samples=n)


def test_a_single_teacher_is_the_committee_of_one():
    plan = distill_plan(spec(teacher=common_pb2.ModelSpec(model="gpt-4o-mini")))
    (only,) = plan.committee
    assert (only.label, only.n_samples, only.first_index, only.field) == (
        "gpt-4o-mini", 4, 0, "spec.teacher")
    assert plan.teacher is only.teacher and plan.n_samples == 4


def test_members_are_numbered_one_after_the_other():
    plan = distill_plan(spec(committee=[member("gpt-4o-mini", 3), member("gpt-4o", 2)]))
    assert [(m.label, m.first_index, m.field) for m in plan.committee] == [
        ("gpt-4o-mini", 0, "spec.committee[0].teacher"),
        ("gpt-4o", 3, "spec.committee[1].teacher")]
    assert plan.n_samples == 5 and plan.teacher.model == "gpt-4o-mini"


def test_the_same_model_at_two_endpoints_is_two_members_with_their_endpoints_in_the_label():
    plan = distill_plan(spec(committee=[
        member("gpt-4o-mini", 1, base_url="http://127.0.0.1:1/v1"),
        member("gpt-4o-mini", 1, base_url="http://127.0.0.1:2/v1")]))
    assert [m.label for m in plan.committee] == ["gpt-4o-mini @ http://127.0.0.1:1/v1",
                                                 "gpt-4o-mini @ http://127.0.0.1:2/v1"]


def test_the_first_member_leads():
    s = spec(committee=[member("gpt-4o", 1), member("gpt-4o-mini", 1)])
    assert lead_teacher(s.committee, s.teacher).model == "gpt-4o"
    single = spec(teacher=common_pb2.ModelSpec(model="gpt-4o-mini"))
    assert lead_teacher(single.committee, single.teacher).model == "gpt-4o-mini"


@pytest.mark.parametrize(("fields", "message"), [
    ({"committee": [member("gpt-4o", 0)]}, "spec.committee[0].n_samples: must be in [1, 16]"),
    ({"committee": [member("gpt-4o", 17)]}, "spec.committee[0].n_samples: must be in [1, 16]"),
    ({"committee": [member("gpt-4o", 1), member("gpt-4o", 2)]},
     "spec.committee[1].teacher: 'gpt-4o' is listed twice (also spec.committee[0])"),
    ({"committee": [member("gpt-4o", 1)], "n_samples": 2},
     "spec.n_samples: must be unset when spec.committee is given"),
    ({"committee": [member("gpt-4o", 2, temperature=0.0)]},
     "spec.committee[0].teacher.temperature: must be > 0"),
    ({"committee": [member("", 2)]}, "spec.committee[0].teacher"),
    ({"committee": [member(f"m{i}", 1, provider=common_pb2.PROVIDER_OPENAI)
                    for i in range(9)]}, "spec.committee: at most 8 members, got 9"),
])
def test_bad_committees_name_the_field(fields, message):
    with pytest.raises(InvalidArgument) as raised:
        distill_plan(spec(**fields))
    assert message in str(raised.value)


def test_the_client_builds_a_committee_spec_without_a_teacher():
    from distill.client import Distiller

    s = Distiller.spec(dataset=common_pb2.ArtifactRef(uri="file:///d.jsonl"),
                       student="smollm2-135m", judge=common_pb2.JudgeSpec(
                           length=common_pb2.LengthJudge(min_chars=1)),
                       committee=[{"teacher": {"model": "gpt-4o"}, "n_samples": 2},
                                  {"teacher": {"model": "gpt-4o-mini"}, "n_samples": 1}])
    assert not s.HasField("teacher")
    assert [(m.label, m.n_samples) for m in distill_plan(s).committee] == [
        ("gpt-4o", 2), ("gpt-4o-mini", 1)]
