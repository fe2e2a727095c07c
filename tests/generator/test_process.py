"""The generator as a real process (python -m services.generator): SIGKILL half way and resume
repeats no finished teacher call; the API key appears nowhere but in the provider's requests.
Both with the teacher calls in the service's process and in call processes beside it."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from distill.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from services.common.storage import LocalStore
from services.common.teacher_cache import PREFIX
from tests.fixtures.processes import start_module
from tests.fixtures.waits import wait_for
from tests.generator.conftest import KEY, KEY_ENV

PROMPTS, SAMPLES, CONCURRENCY = 30, 2, 3
# DISTILL_GENERATOR_TEACHER_PROCESSES: 0, or 2 call processes for every job (from concurrency 1)
CALLS_IN = pytest.mark.parametrize("call_processes", ["0", "2"], ids=["in-service", "processes"])


def make_request(fake, endpoint="fake-openai", job_id="resume-job", text="question"):
    prompts = [common_pb2.Prompt(id=f"p{i}", messages=[common_pb2.ChatMessage(
        role=common_pb2.ROLE_USER, content=f"{text} {i}")]) for i in range(PROMPTS)]
    return generator_pb2.GenerateRequest(
        prompts=generator_pb2.InlinePrompts(prompts=prompts),
        teacher=common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                     endpoint=endpoint),
        n_samples=SAMPLES, job_id=job_id,
        limits=common_pb2.RateLimits(max_concurrency=CONCURRENCY))


def start_generator(tmp_path: Path, fake, call_processes: str, **env: str):
    # The fake as two configured endpoints: one holding the right key, one a wrong one.
    providers = {**fake.providers(KEY_ENV), "fake-wrong-key": {
        "provider": "openai", "base_url": fake.openai_base_url,
        "api_key_env": "WRONG_TEACHER_API_KEY"}}
    return start_module("services.generator", log_dir=tmp_path / "logs", env={
        "DISTILL_PROVIDERS": json.dumps(providers),
        "DISTILL_GENERATOR_STORE_URL": f"file://{tmp_path / 'store'}",
        "DISTILL_GENERATOR_TEACHER_PROCESSES": call_processes,
        "DISTILL_GENERATOR_TEACHER_PROCESSES_FROM_CONCURRENCY": "1",
        # one call per sample, so that a kill lands between calls of one prompt too
        "DISTILL_GENERATOR_OPENAI_N": "separate",
        "DISTILL_GENERATOR_LOG_LEVEL": "DEBUG",
        KEY_ENV: KEY,
        **env,
    })


def run_all(service, request):
    with grpc.insecure_channel(service.address) as channel:
        return list(generator_pb2_grpc.GeneratorServiceStub(channel).Generate(request, timeout=60))


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue  # gone meanwhile
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@CALLS_IN
def test_kill_half_way_then_resume_repeats_no_finished_call(tmp_path, fake, call_processes):
    fake.configure(latency=0.05)
    store = LocalStore(tmp_path / "store")
    service = start_generator(tmp_path, fake, call_processes)
    groups = 0
    helpers: list[int] = []
    with grpc.insecure_channel(service.address) as channel:
        stream = generator_pb2_grpc.GeneratorServiceStub(channel).Generate(
            make_request(fake), timeout=60)
        with pytest.raises(grpc.RpcError) as killed:
            for event in stream:
                groups += event.WhichOneof("event") == "group"
                if groups == PROMPTS // 2:
                    helpers = children(service.proc.pid)
                    service.proc.kill()  # SIGKILL: no cleanup, no graceful anything
        assert killed.value.code() == grpc.StatusCode.UNAVAILABLE
    service.proc.wait(60)
    assert len(helpers) == int(call_processes)
    wait_for(lambda: not any(alive(pid) for pid in helpers),
             "call processes do not outlive the service")
    # Calls the dead processes had in flight end at the provider (answered or dropped); after
    # that no client is left to call it, so the counts below are final.
    wait_for(lambda: fake.stats()["in_flight"] == 0, "the provider finishes its calls")
    cached = len(list(store.list(PREFIX)))
    served_before = fake.stats()["completed_samples"]
    assert PROMPTS * SAMPLES // 2 <= cached < PROMPTS * SAMPLES
    # Answers the provider sent that were never cached. A call's limiter slot frees when its
    # answer arrives, before the answer is cached (so cache I/O never holds a provider slot);
    # each of the generator's workers holds one prompt at a time and caches a prompt's answers
    # before it takes the next. So what a kill can lose is bounded by the workers (twice the
    # concurrency), each with at most one prompt's samples, not by the calls in flight.
    workers = min(2 * CONCURRENCY, PROMPTS)
    assert 0 <= served_before - cached <= workers * SAMPLES
    assert not store.exists("jobs/resume-job/candidates/candidates.jsonl")

    service = start_generator(tmp_path, fake, call_processes)
    try:
        events = run_all(service, make_request(fake))
        assert sum(e.WhichOneof("event") == "group" for e in events) == PROMPTS
        summary = events[-1].summary
        assert summary.candidate_count == PROMPTS * SAMPLES
        assert summary.usage.cached_requests == cached
        assert summary.usage.requests == PROMPTS * SAMPLES
        # the resumed run asked only for the samples that were never cached
        assert fake.stats()["completed_samples"] - served_before == PROMPTS * SAMPLES - cached
        assert len(list(store.list(PREFIX))) == PROMPTS * SAMPLES

        before_rerun = fake.stats()["received"]
        again = run_all(service, make_request(fake, job_id="rerun-job"))
        assert fake.stats()["received"] == before_rerun  # a full rerun: zero provider calls
        assert again[-1].summary.usage.cached_requests == PROMPTS * SAMPLES
    finally:
        assert service.stop() == 0


@CALLS_IN
def test_api_key_appears_only_in_requests_to_the_provider(tmp_path, fake, call_processes):
    wrong_key = "sk-distill-WRONG-KEY-0ddba11"
    fake.configure(api_key=KEY)
    service = start_generator(tmp_path, fake, call_processes, WRONG_TEACHER_API_KEY=wrong_key)
    try:
        events = run_all(service, make_request(fake))
        assert events[-1].summary.candidate_count == PROMPTS * SAMPLES
        # a key the provider refuses; its 401 message echoes the key back
        with pytest.raises(grpc.RpcError) as raised:
            run_all(service, make_request(fake, endpoint="fake-wrong-key",
                                          job_id="wrong-key", text="uncached question"))
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Incorrect API key provided" in raised.value.details()
        assert wrong_key not in raised.value.details()
        helpers = children(service.proc.pid)
        assert len(helpers) == int(call_processes)
        for pid in helpers:  # the key reaches a call process over its pipe, not its command
            assert KEY not in Path(f"/proc/{pid}/cmdline").read_text()
    finally:
        assert service.stop() == 0
    assert not any(alive(pid) for pid in helpers)  # a stopped service ends its call processes
    assert fake.server.keys_seen == {KEY, wrong_key}  # both were really used
    log = service.log()
    assert '"event": "generation finished"' in log  # the log is there, and verbose (DEBUG)
    assert KEY not in log and wrong_key not in log
    stored = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert len(stored) > PROMPTS * SAMPLES  # cache entries, candidates, metadata sidecars
    for path in stored:
        data = path.read_bytes()
        assert KEY.encode() not in data and wrong_key.encode() not in data, path
