"""Bad small-data specs over real gRPC (issue 23): an expansion target below the dataset's size,
a committee member with no samples, a teacher listed twice, ... are INVALID_ARGUMENT naming the
field, before any teacher call and without a job."""

from __future__ import annotations

import grpc
import pytest

from distill.client import DistillClientError
from distill.v1 import common_pb2, gateway_pb2
from tests.fixtures.fake_provider import run_fake_provider
from tests.gateway.test_service import GOOD, gateway, spec, upload  # noqa: F401 - fixture


def member(fake, model="gpt-4o-mini", n=2) -> common_pb2.CommitteeMember:
    return common_pb2.CommitteeMember(teacher=common_pb2.ModelSpec(
        model=model, base_url=fake.openai_base_url), n_samples=n)


def committee(*members):
    def change(s: gateway_pb2.DistillSpec, fake) -> None:
        s.ClearField("teacher")
        s.committee.extend(m(fake) for m in members)
    return change


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda s, fake: s.expansion.__setattr__("target_prompts", 3),
     "spec.expansion.target_prompts: 3 is below the dataset's size (5 prompts)"),
    (lambda s, fake: s.expansion.__setattr__("target_prompts", -1),
     "spec.expansion.target_prompts: must be in [0, 100000]"),
    (lambda s, fake: s.expansion.__setattr__("examples_per_call", 0),
     "spec.expansion.examples_per_call: must be in [1, 50]"),
    (lambda s, fake: s.expansion.__setattr__("duplicate_threshold", 0.0),
     "spec.expansion.duplicate_threshold: must be in (0, 1]"),
    (lambda s, fake: s.expansion.judge.regex.__setattr__("pattern", "("),
     "spec.expansion.judge.regex.pattern"),
    (committee(lambda f: member(f, n=0)),
     "spec.committee[0].n_samples: must be in [1, 16] (a member writes at least one sample)"),
    (committee(member, lambda f: member(f, "gpt-4o"), lambda f: member(f, n=1)),
     "spec.committee[2].teacher: 'gpt-4o-mini' is listed twice (also spec.committee[0])"),
    (lambda s, fake: (committee(member)(s, fake), s.teacher.CopyFrom(
        common_pb2.ModelSpec(model="gpt-4o"))),
     "spec.teacher: must be unset when spec.committee is given"),
    (committee(lambda f: member(f, "gpt-4o", 16), lambda f: member(f, "gpt-4o-mini", 16),
               lambda f: member(f, "gpt-4.1-mini", 16)),
     "spec.committee: the members' n_samples add up to 48; at most 32"),
])
def test_bad_small_data_specs_are_refused_naming_the_field(gateway, change, fragment):  # noqa: F811
    client, tmp = gateway
    with run_fake_provider() as fake:
        s = spec(upload(client, tmp, GOOD))
        s.teacher.base_url = fake.openai_base_url
        change(s, fake)
        for call in (client.distill, client.estimate):
            with pytest.raises(DistillClientError) as raised:
                call(s)
            assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT, raised.value.message
            assert fragment in raised.value.message
        assert fake.stats()["received"] == 0
    assert list(client.list()) == []


def test_a_target_equal_to_the_dataset_and_a_committee_are_accepted_by_estimate(gateway):  # noqa: F811
    client, tmp = gateway
    with run_fake_provider() as fake:
        s = spec(upload(client, tmp, GOOD))
        committee(member, lambda f: member(f, "gpt-4o", 1))(s, fake)
        s.expansion.target_prompts = 5
        result = client.estimate(s)
    items = {line.item for line in result.breakdown}
    assert {"teacher gpt-4o-mini", "teacher gpt-4o", "expansion"} <= items
