"""GeneratorService.Generate end to end: real gRPC over loopback, the fake provider server for
the teacher (OpenAI and Anthropic wire formats, scripted faults), file:// and S3 stores."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
import uuid

import grpc
import pytest
from google.protobuf import json_format

from distill.v1 import common_pb2, generator_pb2
from services.common.models import price_for
from services.common.specs.layout import JobKeys
from services.common.storage import open_store
from services.common.teacher_cache import PREFIX
from services.common.teacher_cache_keys import read_keys
from tests.fixtures.waits import async_wait_for
from tests.generator.conftest import KEY_ENV

U = common_pb2.ROLE_USER


def inline(count: int, prefix: str = "question") -> generator_pb2.InlinePrompts:
    return generator_pb2.InlinePrompts(prompts=[
        common_pb2.Prompt(id=f"p{i}", messages=[common_pb2.ChatMessage(
            role=U, content=f"{prefix} {i}")]) for i in range(count)])


def teacher(fake, provider=common_pb2.PROVIDER_OPENAI, **kw) -> common_pb2.ModelSpec:
    base = fake.openai_base_url if provider == common_pb2.PROVIDER_OPENAI else \
        fake.anthropic_base_url
    model = "gpt-4o-mini" if provider == common_pb2.PROVIDER_OPENAI else "claude-haiku"
    return common_pb2.ModelSpec(provider=provider, model=model, base_url=base,
                                api_key_env=KEY_ENV, **kw)


def read_candidates(store, ref: common_pb2.ArtifactRef) -> list[common_pb2.CandidateGroup]:
    """The groups of a candidates artifact, as its JSONL lines say."""
    lines = store.get_bytes(store.key_from_uri(ref.uri)).decode("utf-8").splitlines()
    return [json_format.Parse(line, common_pb2.CandidateGroup()) for line in lines if line.strip()]


def request(fake, count=6, n=3, concurrency=4, **kw) -> generator_pb2.GenerateRequest:
    kw.setdefault("prompts", inline(count))
    kw.setdefault("teacher", teacher(fake))
    return generator_pb2.GenerateRequest(
        n_samples=n, limits=common_pb2.RateLimits(max_concurrency=concurrency), **kw)


async def run(generator, req) -> list[generator_pb2.GenerateResponse]:
    return [event async for event in generator.stub.Generate(req, timeout=60)]


async def status_of(generator, req) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await run(generator, req)
    return raised.value


def kinds(events) -> list[str]:
    return [e.WhichOneof("event") for e in events]


async def test_stream_groups_progress_summary_and_artifact(generator, fake):
    fake.configure(latency=0.02)
    events = await run(generator, request(fake, count=12, n=3, job_id="job-1"))
    assert kinds(events)[0] == "progress" and kinds(events)[-1] == "summary"
    assert events[0].progress.prompts_done == 0 and events[0].progress.prompts_total == 12
    groups = [e.group for e in events if e.WhichOneof("event") == "group"]
    assert sorted(g.prompt.id for g in groups) == sorted(f"p{i}" for i in range(12))
    for group in groups:
        assert [c.sample_index for c in group.candidates] == [0, 1, 2]
        assert all(c.prompt_id == group.prompt.id for c in group.candidates)
        texts = [c.text for c in group.candidates]
        assert len(set(texts)) == 3 and all(t.endswith(group.prompt.messages[0].content)
                                            for t in texts)
        assert all(c.finish_reason == "stop" and not c.cached for c in group.candidates)
    done = [e.progress.prompts_done for e in events if e.WhichOneof("event") == "progress"]
    assert done == sorted(done) and done[-1] == 12

    summary = events[-1].summary
    assert (summary.prompts, summary.candidate_count) == (12, 36)
    assert fake.stats()["completed"] == 12  # `n` honoured: one call per prompt
    usage = summary.usage
    assert usage.requests == 12 and usage.cached_requests == 0
    assert usage.input_tokens == sum(c.usage.input_tokens for g in groups for c in g.candidates)
    assert usage.output_tokens == sum(c.usage.output_tokens for g in groups for c in g.candidates)
    assert usage.cost_usd == pytest.approx(
        price_for("gpt-4o-mini").cost_usd(usage.input_tokens, usage.output_tokens))
    assert usage.cost_usd > 0

    ref = summary.candidates
    assert ref.uri.endswith("/jobs/job-1/candidates/candidates.jsonl")
    assert ref.media_type == "application/jsonl" and len(ref.sha256) == 64
    stored = read_candidates(generator.store, ref)
    assert [g.prompt.id for g in stored] == [f"p{i}" for i in range(12)]  # dataset order
    assert {g.prompt.id: g for g in stored} == {g.prompt.id: g for g in groups}


async def test_candidates_are_spooled_to_disk_and_stored_in_dataset_order(generator, fake):
    """A job's candidates can outgrow the service's memory: they go to a local spool as groups
    finish and are uploaded in dataset order, not held until the end."""
    fake.configure(replies=["x" * 50_000])
    await run(generator, request(fake, count=2, n=4, job_id="warm-up"))  # the SDK's lazy imports
    fake.push_faults({"kind": "slow", "seconds": 0.5})  # one early call finishes last
    streamed: list[str] = []
    held: list[int] = []  # memory allocated since the start, at each group streamed
    tracemalloc.start()
    try:
        async for event in generator.stub.Generate(
                request(fake, count=200, n=4, concurrency=8, job_id="big"), timeout=120):
            if event.WhichOneof("event") == "group":
                streamed.append(event.group.prompt.id)  # the events themselves are dropped
                held.append(tracemalloc.get_traced_memory()[0])
            elif event.WhichOneof("event") == "summary":
                ref = event.summary.candidates
    finally:
        tracemalloc.stop()
    dataset_order = [f"p{i}" for i in range(200)]
    assert streamed != dataset_order and sorted(streamed) == sorted(dataset_order)
    assert ref.size_bytes > 40_000_000
    # Kept in memory, the lines would make this grow by the artifact's size from the early groups
    # to the last; spooled, only the calls in flight (7-10 MB here) come and go.
    growth = max(held[20:]) - held[19]
    assert growth < ref.size_bytes / 6, (held[19], max(held[20:]), ref.size_bytes)
    stored = read_candidates(generator.store, ref)
    assert [g.prompt.id for g in stored] == dataset_order
    assert all(len(c.text) == 50_000 for g in stored for c in g.candidates)


async def test_rerun_makes_zero_provider_calls(generator, fake):
    first = await run(generator, request(fake, job_id="job-a", run_id="run-a"))
    calls = fake.stats()["received"]
    again = await run(generator, request(fake, job_id="job-b"))
    assert fake.stats()["received"] == calls
    summary = again[-1].summary
    assert summary.usage.requests == summary.usage.cached_requests == 18
    assert summary.usage.cost_usd == 0 and summary.usage.input_tokens == 0
    def per_candidate(events, field):
        return {(e.group.prompt.id, c.sample_index): field(c)
                for e in events if e.WhichOneof("event") == "group" for c in e.group.candidates}

    assert per_candidate(again, lambda c: c.text) == per_candidate(first, lambda c: c.text)
    assert all(c.cached for e in again if e.WhichOneof("event") == "group"
               for c in e.group.candidates)
    # a cached candidate keeps what its call cost when it was made (evaluation prices the
    # teacher per 1,000 requests from it), while its usage says nothing was paid again
    paid = per_candidate(first, lambda c: c.usage.cost_usd)
    assert per_candidate(first, lambda c: c.original_cost_usd) == paid and min(paid.values()) > 0
    assert per_candidate(again, lambda c: c.original_cost_usd) == paid
    # ...and names the run that paid, and the prompt it paid for (the gateway charges a call
    # whose group an earlier run of its own never delivered: services/gateway/stage_runs.py)
    usage = per_candidate(first, lambda c: c.usage)
    assert per_candidate(first, lambda c: c.paid.usage) == usage
    assert per_candidate(again, lambda c: c.paid.usage) == usage
    assert per_candidate(again, lambda c: (c.paid.run_id, c.paid.prompt_id)) == {
        (prompt, index): ("run-a", prompt) for prompt, index in paid}
    # ...and which call: its cache key, one per sample, the same on the rerun
    calls = per_candidate(first, lambda c: c.paid.call)
    assert all(calls.values()) and len(set(calls.values())) == len(calls)
    assert per_candidate(again, lambda c: c.paid.call) == calls


async def test_a_cache_entry_written_before_the_payer_fields_is_still_a_hit(generator, fake):
    await run(generator, request(fake, count=1, n=1, job_id="job-a"))
    (key,) = [k for k in generator.store.list(PREFIX) if k.endswith(".json")]
    entry = json.loads(generator.store.get_bytes(key))
    for field in ("run_id", "prompt_id", "requests"):
        del entry[field]
    generator.store.put_bytes(key, json.dumps(entry).encode())
    calls = fake.stats()["received"]
    (group,) = [e.group for e in await run(generator, request(fake, count=1, n=1))
                if e.WhichOneof("event") == "group"]
    assert fake.stats()["received"] == calls
    (candidate,) = group.candidates
    assert candidate.cached and candidate.paid.run_id == "" and candidate.paid.usage.cost_usd > 0


async def test_dataset_on_s3_with_cache_and_artifact_in_s3(generator_factory, fake, s3_server):
    bucket = f"gen-{uuid.uuid4().hex[:12]}"
    generator = await generator_factory(
        store_url=f"s3://{bucket}", s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key)
    lines = [{"messages": [{"role": "system", "content": "Answer briefly."},
                           {"role": "user", "content": f"what is {i}+{i}?"},
                           {"role": "assistant", "content": str(2 * i)}]} for i in range(5)]
    lines.append({"input": "flat question", "expected_output": "flat answer"})
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    stored = generator.store.put_bytes("datasets/example.jsonl", data)
    dataset = common_pb2.ArtifactRef(uri=stored.uri, sha256=stored.sha256)
    req = request(fake, n=2, dataset=dataset, job_id="s3-job", prompts=None)
    events = await run(generator, req)
    summary = events[-1].summary
    assert summary.candidates.uri == f"s3://{bucket}/jobs/s3-job/candidates/candidates.jsonl"
    groups = read_candidates(open_store(f"s3://{bucket}", **s3_server.store_settings()),
                             summary.candidates)
    assert [g.prompt.id for g in groups] == [f"line-{i}" for i in range(1, 7)]
    assert groups[0].prompt.reference == "0" and groups[5].prompt.reference == "flat answer"
    assert groups[0].candidates[0].text.endswith("what is 0+0?")
    assert len(list(generator.store.list(PREFIX))) == 12  # one cache entry per sample
    await run(generator, req)
    assert fake.stats()["completed"] == 6  # the rerun read the S3 cache


async def test_bad_dataset_lines_fail_before_any_teacher_call(generator, fake):
    data = b'{"prompt": "ok"}\n{"prompt": \n{"prompt": "ok"}\n{"messages": []}\n[]\n'
    stored = generator.store.put_bytes("datasets/bad.jsonl", data)
    req = request(fake, dataset=common_pb2.ArtifactRef(uri=stored.uri), prompts=None)
    error = await status_of(generator, req)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("dataset has 3 bad lines")
    for line in (2, 4, 5):
        assert f"line {line}: " in error.details()
    assert fake.stats()["received"] == 0


@pytest.mark.parametrize(("status", "code"), [
    (400, grpc.StatusCode.INVALID_ARGUMENT), (401, grpc.StatusCode.UNAUTHENTICATED),
    (403, grpc.StatusCode.PERMISSION_DENIED), (404, grpc.StatusCode.NOT_FOUND),
])
@pytest.mark.parametrize("provider", [common_pb2.PROVIDER_OPENAI, common_pb2.PROVIDER_ANTHROPIC])
async def test_provider_refusals_end_the_stream_with_the_matching_status(
    generator, fake, status, code, provider
):
    fake.push_faults({"status": status, "message": f"the model refuses ({status})", "times": -1})
    req = request(fake, concurrency=1, teacher=teacher(fake, provider))
    error = await status_of(generator, req)
    assert error.code() == code
    assert f"the model refuses ({status})" in error.details()
    assert fake.stats()["received"] == 1  # not retried


async def test_transient_faults_are_retried_and_counted(generator, fake):
    fake.push_faults({"status": 500}, {"kind": "truncated"}, {"status": 503},
                     {"status": 429, "retry_after": 0.1})
    events = await run(generator, request(fake, count=5, n=2, concurrency=2))
    last = [e.progress for e in events if e.WhichOneof("event") == "progress"][-1]
    assert last.prompts_done == 5 and last.retries == 4 and last.rate_limited == 1
    assert events[-1].summary.candidate_count == 10
    assert fake.stats()["received"] == 5 + 4


async def test_exhausted_retries_end_unavailable(generator, fake):
    fake.push_faults({"status": 502, "message": "upstream down", "times": -1})
    req = request(fake, concurrency=1)
    req.limits.max_retries = 2
    error = await status_of(generator, req)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "upstream down" in error.details() and "after 3 attempts" in error.details()


async def test_anthropic_teacher_one_call_per_sample(generator, fake):
    events = await run(generator, request(fake, count=3, n=2,
                                          teacher=teacher(fake, common_pb2.PROVIDER_ANTHROPIC)))
    assert events[-1].summary.candidate_count == 6
    assert fake.stats()["completed"] == 6 and events[-1].summary.usage.requests == 6
    assert events[-1].summary.usage.cost_usd == pytest.approx(price_for("claude-haiku").cost_usd(
        events[-1].summary.usage.input_tokens, events[-1].summary.usage.output_tokens))


async def test_server_ignoring_n_gets_separate_calls(generator, fake):
    fake.configure(honor_n=False)
    events = await run(generator, request(fake, count=4, n=3, concurrency=1))
    groups = [e.group for e in events if e.WhichOneof("event") == "group"]
    assert all(len({c.text for c in g.candidates}) == 3 for g in groups)
    # the first prompt probes with n=3 and gets one choice; after that one call per sample
    assert fake.stats()["completed"] == 12


async def test_system_prompt_is_prepended_only_where_missing(generator, fake):
    prompts = inline(2)
    prompts.prompts[1].messages.insert(0, common_pb2.ChatMessage(
        role=common_pb2.ROLE_SYSTEM, content="own system"))
    await run(generator, request(fake, n=1, prompts=prompts, system_prompt="Be terse today."))
    # the fake counts words of every message (+3 each): p0 has the 3-word system prompt added
    log = fake.server.stats()
    assert log["completed"] == 2
    usage_by_prompt = {}
    for group in read_candidates(generator.store, (await run(generator, request(
            fake, n=1, prompts=prompts, system_prompt="Be terse today.")))[-1].summary.candidates):
        usage_by_prompt[group.prompt.id] = group
    assert set(usage_by_prompt) == {"p0", "p1"}
    assert len(usage_by_prompt["p0"].prompt.messages) == 1  # the prompt itself is untouched


@pytest.mark.parametrize(("change", "code", "fragment"), [
    (lambda r: setattr(r, "n_samples", 17), grpc.StatusCode.INVALID_ARGUMENT, "n_samples"),
    (lambda r: r.teacher.__setattr__("temperature", 0.0), grpc.StatusCode.INVALID_ARGUMENT,
     "temperature: must be > 0"),
    (lambda r: setattr(r, "job_id", "../../etc"), grpc.StatusCode.INVALID_ARGUMENT, "job_id"),
    (lambda r: r.ClearField("prompts"), grpc.StatusCode.INVALID_ARGUMENT, "source"),
    (lambda r: r.limits.__setattr__("max_concurrency", 100000), grpc.StatusCode.INVALID_ARGUMENT,
     "max_concurrency"),
    (lambda r: r.teacher.CopyFrom(common_pb2.ModelSpec(
        provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini", endpoint="fake-missing")),
     grpc.StatusCode.FAILED_PRECONDITION, "MISSING_TEACHER_API_KEY is not set"),
    (lambda r: r.teacher.__setattr__("api_key_env", "DISTILL_S3_SECRET_KEY"),
     grpc.StatusCode.PERMISSION_DENIED, "not the key configured for endpoint 'fake-openai'"),
    (lambda r: r.teacher.__setattr__("model", ""), grpc.StatusCode.INVALID_ARGUMENT,
     "teacher.model"),
])
async def test_bad_requests_are_refused_before_any_call(generator, fake, change, code, fragment):
    req = request(fake)
    change(req)
    error = await status_of(generator, req)
    assert error.code() == code and fragment in error.details()
    assert fake.stats()["received"] == 0


async def test_cancelling_the_stream_stops_teacher_calls(generator, fake):
    fake.configure(latency=0.05)
    call = generator.stub.Generate(request(fake, count=60, n=1, concurrency=2, job_id="cut"),
                                   timeout=60)
    groups = 0
    async for event in call:
        groups += event.WhichOneof("event") == "group"
        if groups == 3:
            break
    call.cancel()
    at_cancel = fake.server.received
    await async_wait_for(lambda: fake.server.in_flight == 0, "calls already dispatched end")
    await asyncio.sleep(0.5)  # negative check: ten teacher latencies go by, no new call comes
    # at most the 2 (concurrency) dispatched but not yet arrived at the cancel; 60 if not stopped
    assert fake.server.received <= at_cancel + 2 < 60 and fake.server.in_flight == 0
    # the cut run still lists every cache entry it wrote (the gateway deletes by that list)
    folder = JobKeys("cut").cache_manifests
    await async_wait_for(lambda: list(generator.store.list(folder)), "the run's manifest")
    named = set(manifest_keys(generator.store, "cut"))
    assert 3 <= len(named) < 60 and cache_entries(generator.store) <= named


async def test_wide_jobs_call_the_teacher_from_call_processes_narrow_ones_from_the_service(
        generator_factory, fake):
    generator = await generator_factory(teacher_processes=2,
                                        teacher_processes_from_concurrency=8)
    processes = generator.servicer.call_processes
    narrow = await run(generator, request(fake, count=6, n=2, concurrency=7, job_id="narrow"))
    assert narrow[-1].summary.candidate_count == 12
    assert processes.pids() == []  # none started for a job under the threshold

    wide = await run(generator, request(fake, count=6, n=2, concurrency=8, job_id="wide",
                                        prompts=inline(6, "other")))
    # one call per prompt: `n` works through the call processes too
    assert wide[-1].summary.candidate_count == 12 and wide[-1].summary.usage.requests == 6
    assert len(processes.pids()) == 2
    groups = read_candidates(generator.store, wide[-1].summary.candidates)
    assert [len(g.candidates) for g in groups] == [2] * 6

    rerun = await run(generator, request(fake, count=6, n=2, concurrency=8, job_id="wide-again",
                                         prompts=inline(6, "other")))
    assert rerun[-1].summary.usage.cached_requests == 12  # the cache is the service's


async def test_teacher_cache_is_per_project(generator, fake):
    """A project never gets an answer another project paid for: the same prompts for another
    project call the provider again; for the same project, they come from the cache."""
    await run(generator, request(fake, job_id="job-a", project="alpha"))
    calls = fake.stats()["received"]
    other = await run(generator, request(fake, job_id="job-b", project="beta"))
    assert fake.stats()["received"] == 2 * calls
    assert other[-1].summary.usage.cached_requests == 0
    again = await run(generator, request(fake, job_id="job-c", project="alpha"))
    assert fake.stats()["received"] == 2 * calls
    assert again[-1].summary.usage.cached_requests == 18
    keys = list(generator.store.list(PREFIX))
    assert sum(k.startswith(f"{PREFIX}alpha/") for k in keys) == 18
    assert sum(k.startswith(f"{PREFIX}beta/") for k in keys) == 18


async def test_a_bad_project_name_is_refused(generator, fake):
    error = await status_of(generator, request(fake, project="../x"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "project" in error.details()
    assert fake.stats()["received"] == 0


def manifest_keys(store, job_id: str) -> list[str]:
    """Every key the run manifests of `job_id` name, one entry per line of each."""
    folder = JobKeys(job_id).cache_manifests
    return [key for name in store.list(folder) for key in read_keys(store, name)]


def cache_entries(store, prefix: str = PREFIX) -> set[str]:
    """The keys of the entries in one project's cache folder (not its subfolders)."""
    return {k.removeprefix(prefix).removesuffix(".json") for k in store.list(prefix)
            if "/" not in k.removeprefix(prefix)}


async def test_each_run_names_the_cache_entries_it_read_or_wrote(generator, fake):
    """The manifest the gateway deletes a job's cache entries by: a run lists what it wrote
    and what it read, so a prompt two jobs share is named by both."""
    await run(generator, request(fake, count=4, n=2, job_id="job-a"))
    first = manifest_keys(generator.store, "job-a")
    assert sorted(first) == sorted(cache_entries(generator.store)) and len(first) == 8
    # 4 prompts in common, 2 new: 8 entries read, 4 written
    await run(generator, request(fake, count=6, n=2, job_id="job-b"))
    second = manifest_keys(generator.store, "job-b")
    assert len(second) == 12 and set(second) == cache_entries(generator.store)
    assert set(first) < set(second)
    # a rerun for the same job writes a manifest of its own beside the first
    await run(generator, request(fake, count=4, n=2, job_id="job-a"))
    assert len(list(generator.store.list(JobKeys("job-a").cache_manifests))) == 2
    # another project's run names its own folder's entries, under the same keys
    await run(generator, request(fake, count=4, n=2, job_id="job-c", project="beta"))
    assert set(manifest_keys(generator.store, "job-c")) == set(first) == \
        cache_entries(generator.store, f"{PREFIX}beta/")

