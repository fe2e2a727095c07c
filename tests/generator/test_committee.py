"""A teacher committee in one Generate stream: real gRPC, the fake provider speaking both the
OpenAI and the Anthropic wire formats (two different teachers with their own prices)."""

from __future__ import annotations

import grpc
import pytest

from distill.v1 import common_pb2, generator_pb2
from services.common.models import price_for
from tests.generator.test_generate import inline, read_candidates, run, status_of, teacher


def committee_request(fake, **kw) -> generator_pb2.GenerateRequest:
    kw.setdefault("committee", [
        common_pb2.CommitteeMember(teacher=teacher(fake), n_samples=2),
        common_pb2.CommitteeMember(teacher=teacher(fake, common_pb2.PROVIDER_ANTHROPIC),
                                   n_samples=3)])
    return generator_pb2.GenerateRequest(prompts=inline(4), job_id="committee-1", **kw)


async def test_each_member_writes_its_samples_into_one_group_priced_its_own_way(generator, fake):
    events = await run(generator, committee_request(fake))
    groups = [e.group for e in events if e.WhichOneof("event") == "group"]
    assert len(groups) == 4
    for group in groups:
        assert [(c.sample_index, c.teacher) for c in group.candidates] == [
            (0, "gpt-4o-mini"), (1, "gpt-4o-mini"), (2, "claude-haiku-4-5"),
            (3, "claude-haiku-4-5"), (4, "claude-haiku-4-5")]
        for c in group.candidates:
            price = price_for(c.teacher)
            assert c.usage.cost_usd == pytest.approx(
                price.cost_usd(c.usage.input_tokens, c.usage.output_tokens))
    summary = events[-1].summary
    assert summary.candidate_count == 20
    assert summary.usage.cost_usd == pytest.approx(
        sum(c.usage.cost_usd for g in groups for c in g.candidates))
    stored = read_candidates(generator.store, summary.candidates)
    assert [c.teacher for c in stored[0].candidates] == [c.teacher for c in groups[0].candidates]

    # Run again: every member's samples come from the teacher cache.
    received = fake.stats()["received"]
    again = await run(generator, committee_request(fake))
    assert fake.stats()["received"] == received
    assert again[-1].summary.usage.cached_requests == 20


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda r, fake: r.committee[1].teacher.CopyFrom(teacher(fake)),
     "committee[1].teacher: 'gpt-4o-mini' is listed twice (also committee[0])"),
    (lambda r, fake: setattr(r.committee[0], "n_samples", 0), "committee[0].n_samples: must be"),
    (lambda r, fake: r.teacher.CopyFrom(teacher(fake)), "teacher: must be unset when committee"),
    (lambda r, fake: setattr(r, "n_samples", 2), "n_samples: must be unset when committee"),
])
async def test_bad_committees_are_refused_before_any_call(generator, fake, change, fragment):
    req = committee_request(fake)
    change(req, fake)
    error = await status_of(generator, req)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in error.details()
    assert fake.stats()["received"] == 0
