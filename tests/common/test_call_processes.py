"""Teacher calls in call processes (`CallProcesses`): real worker processes, real SDKs, the fake
provider over HTTP. Answers, failures and what was learned about `n` cross the process
boundary intact; a dead process costs its calls one retry, never the job."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import signal
import threading

import pytest

from distill.v1 import common_pb2
from services.common import errors
from services.common.models import price_for
from services.common.providers import (
    CompletionRequest,
    Limits,
    Message,
    ModelClient,
    RateLimiter,
    RetryableProviderError,
    RetryPolicy,
    SamplingParams,
    open_provider,
    resolve_model_spec,
)
from services.common.providers.call_processes import CallProcesses, RemoteProvider
from services.common.providers.call_worker import outcome_frame
from services.common.providers.endpoints import EndpointPolicy, ProviderEndpoint
from services.common.storage import open_store
from services.common.teacher_cache import TeacherCache
from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.waits import async_wait_for

KEY_ENV = "CALLPROC_TEACHER_API_KEY"
KEY = "sk-distill-CALLPROC-7e57c0ffee"
HI = (Message("user", "hi there"),)


@pytest.fixture
def fake():
    with run_fake_provider(api_key=KEY) as handle:
        yield handle


@pytest.fixture
async def processes():
    pool = CallProcesses(2)
    yield pool
    await pool.aclose()


def teacher(fake, processes, wire="openai", endpoint="") -> RemoteProvider:
    """The fake's endpoint for `wire` by its URL, or the configured endpoint named."""
    spec = common_pb2.ModelSpec(
        provider=common_pb2.PROVIDER_OPENAI if wire == "openai" else common_pb2.PROVIDER_ANTHROPIC,
        model="gpt-4o-mini" if wire == "openai" else "claude-haiku-4-5", endpoint=endpoint,
        base_url="" if endpoint else
        fake.openai_base_url if wire == "openai" else fake.anthropic_base_url)
    config = resolve_model_spec(spec, field="teacher", default_temperature=0.8)
    policy = EndpointPolicy({**fake.policy(KEY_ENV).endpoints, "fake-wrong-key": ProviderEndpoint(
        provider="openai", base_url=fake.openai_base_url, api_key_env="WRONG_TEACHER_API_KEY")})
    provider = open_provider(config, field="teacher", processes=processes, policy=policy,
                             environ={KEY_ENV: KEY, "WRONG_TEACHER_API_KEY": "sk-wrong-0ddba11"})
    assert isinstance(provider, RemoteProvider)
    return provider


async def test_calls_run_in_the_processes_and_answer_as_in_process(fake, processes):
    provider = teacher(fake, processes)
    completions = await asyncio.gather(*(
        provider.complete(CompletionRequest((Message("user", f"q {i}"),), n=2, max_tokens=8))
        for i in range(20)))
    assert all(len(c.choices) == 2 and c.output_tokens > 0 for c in completions)
    assert fake.stats()["completed"] == 20
    pids = processes.pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    # the calls were spread: each process was sent the provider (at its first call)
    assert all(provider._id in p.opened for p in processes._slots)
    anthropic = teacher(fake, processes, wire="anthropic")
    reply = await anthropic.complete(CompletionRequest(HI, max_tokens=8))
    assert reply.choices[0].text and anthropic.name == "anthropic"


async def test_failures_cross_the_boundary_with_their_kind_status_and_retry_after(
        fake, processes):
    provider = teacher(fake, processes)
    fake.push_faults({"status": 429, "retry_after": 0.25})
    with pytest.raises(RetryableProviderError) as limited:
        await provider.complete(CompletionRequest(HI, max_tokens=8))
    assert limited.value.rate_limited and limited.value.retry_after == 0.25
    fake.push_faults({"kind": "truncated"})
    with pytest.raises(RetryableProviderError, match="malformed body"):
        await provider.complete(CompletionRequest(HI, max_tokens=8))
    fake.push_faults({"status": 404, "message": "The model `gpt-9` does not exist"})
    with pytest.raises(errors.NotFound, match="does not exist"):
        await provider.complete(CompletionRequest(HI, max_tokens=8))

    wrong = teacher(fake, processes, endpoint="fake-wrong-key")
    with pytest.raises(errors.Unauthenticated) as refused:
        await wrong.complete(CompletionRequest(HI, max_tokens=8))
    assert "Incorrect API key provided" in str(refused.value)
    assert "sk-wrong-0ddba11" not in str(refused.value)  # redacted in the call process


async def test_what_a_process_learns_about_n_reaches_the_client(fake, processes):
    fake.configure(honor_n=False)
    provider = teacher(fake, processes)
    first = await provider.complete(CompletionRequest(HI, n=3, max_tokens=8))
    assert len(first.choices) == 1 and provider.supports_n is False
    client = ModelClient(provider, price=price_for("gpt-4o-mini"), limiter=RateLimiter(Limits()),
                         retry=RetryPolicy(3, 0.01, 0.05))
    before = fake.stats()["received"]
    samples = await client.samples(HI, range(4), SamplingParams(0.8, 8))
    # one call per sample from the start: no call asks for n again
    assert len(samples) == 4 and fake.stats()["received"] - before == 4


async def test_a_killed_process_costs_its_calls_a_retry_and_is_started_again(
        fake, processes, tmp_path):
    fake.configure(latency=1.0)
    provider = teacher(fake, processes)
    await provider.complete(CompletionRequest(HI, max_tokens=8))  # both may now be running
    client = ModelClient(provider, price=price_for("gpt-4o-mini"),
                         limiter=RateLimiter(Limits(max_concurrency=8)),
                         retry=RetryPolicy(3, 0.01, 0.05),
                         cache=TeacherCache(open_store(f"file://{tmp_path}")))
    job = asyncio.create_task(client.samples(HI, range(8), SamplingParams(0.8, 8)))
    # one call asks for all 8 (n=8): kill the process that holds it, once it is at the provider
    await async_wait_for(lambda: fake.server.in_flight == 1, "the call reached the provider")
    victim = next(p.proc.pid for p in processes._slots if p.pending)
    os.kill(victim, signal.SIGKILL)
    samples = await job
    assert len(samples) == 8 and client.stats.retries >= 1
    assert victim not in processes.pids() and len(processes.pids()) == 2

    with pytest.raises(RetryableProviderError, match=r"ended \(exit code -9\)"):
        call = asyncio.create_task(provider.complete(CompletionRequest(HI, max_tokens=8)))
        await async_wait_for(lambda: fake.server.in_flight == 1, "the call reached the provider")
        for pid in processes.pids():
            os.kill(pid, signal.SIGKILL)
        await call


async def test_a_cancelled_call_leaves_nothing_waiting_and_the_process_serving(
        fake, processes):
    fake.configure(latency=0.5)
    provider = teacher(fake, processes)
    await provider.complete(CompletionRequest(HI, max_tokens=8))
    call = asyncio.create_task(provider.complete(CompletionRequest(HI, max_tokens=8)))
    await async_wait_for(lambda: fake.server.in_flight == 1, "the call reached the provider")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert all(not p.pending for p in processes._slots if p is not None)
    # the dropped call has answered (or been dropped) at the provider
    await async_wait_for(lambda: fake.server.in_flight == 0, "the dropped call ended")
    reply = await provider.complete(CompletionRequest(HI, max_tokens=8))
    assert reply.choices and len(processes.pids()) == 2


async def test_close_ends_the_processes(fake):
    pool = CallProcesses(2)
    provider = teacher(fake, pool)
    await provider.complete(CompletionRequest(HI, max_tokens=8))
    procs = [p.proc for p in pool._slots]
    await provider.aclose()
    await pool.aclose()
    assert [p.returncode for p in procs] == [0, 0]  # ended on their own, not killed


def test_an_exception_that_does_not_pickle_comes_back_as_internal_without_its_text():
    class HoldsALock(Exception):
        def __init__(self, text: str) -> None:
            super().__init__(text)
            self.lock = threading.Lock()  # cannot be pickled

    data = outcome_frame(7, False, HoldsALock(f"secret {KEY}"), True)
    call_id, ok, value, supports_n = pickle.load(io.BytesIO(data[4:]))
    assert (call_id, ok, supports_n) == (7, False, True)
    assert type(value) is errors.DistillError and "HoldsALock" in str(value)
    assert KEY not in str(value)
