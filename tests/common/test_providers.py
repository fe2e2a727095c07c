"""The provider layer against the fake provider server (real HTTP): wire formats, error mapping,
redirects refused, retries and backoff, the shared rate limiter, the teacher cache, usage and
cost."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

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
    RetryPolicy,
    SamplingParams,
    open_provider,
    read_api_key,
    resolve_model_spec,
)
from services.common.providers.anthropic_provider import AnthropicProvider
from services.common.providers.endpoints import (
    EndpointPolicy,
    ProviderEndpoint,
    authorize,
    bind_endpoint,
)
from services.common.providers.openai_provider import OpenAIProvider
from services.common.storage import open_store
from services.common.teacher_cache import PREFIX, TeacherCache
from tests.fixtures.fake_provider import run_fake_provider
from tests.fixtures.waits import async_wait_for

KEY = "sk-distill-FAKE-0123456789abcdef"  # recognisable, so a leak is easy to find
HI = (Message("user", "hi there"),)
FAST_RETRY = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def fake():
    with run_fake_provider() as handle:
        yield handle


def openai_provider(fake, **kw) -> OpenAIProvider:
    return OpenAIProvider("gpt-4o-mini", api_key=KEY, base_url=fake.openai_base_url, **kw)


def anthropic_provider(fake, **kw) -> AnthropicProvider:
    return AnthropicProvider("claude-haiku-4-5", api_key=KEY, base_url=fake.anthropic_base_url,
                             **kw)


_open_clients: list[ModelClient] = []


def client_for(provider, *, limits=None, retry=FAST_RETRY, cache=None, price=None):
    client = ModelClient(provider, price=price or price_for("gpt-4o-mini"),
                         limiter=RateLimiter(limits or Limits()), retry=retry, cache=cache)
    _open_clients.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_clients():
    """Providers hold connection pools that must close on the loop that opened them."""
    yield
    while _open_clients:
        await _open_clients.pop().aclose()


# --- wire formats --------------------------------------------------------------------------


async def test_openai_wire_with_n_and_usage(fake):
    provider = openai_provider(fake)
    completion = await provider.complete(CompletionRequest(HI, n=3, max_tokens=7))
    assert [c.text for c in completion.choices] == [
        "reply 1 to: hi there", "reply 2 to: hi there", "reply 3 to: hi there"]
    assert {c.finish_reason for c in completion.choices} == {"stop"}
    assert (completion.input_tokens, completion.output_tokens) == (5, 15)
    assert provider.supports_n is True
    assert fake.server.keys_seen == {KEY}
    await provider.aclose()


async def test_anthropic_wire_moves_system_and_maps_stop_reason(fake):
    provider = anthropic_provider(fake)
    completion = await provider.complete(CompletionRequest(
        (Message("system", "be brief"), Message("user", "hello you"))))
    (choice,) = completion.choices
    assert choice.text == "reply 1 to: hello you" and choice.finish_reason == "stop"
    # system (2 words + 3) + one message (2 words + 3): the system prompt reached the server
    assert completion.input_tokens == 10 and completion.output_tokens == 5
    assert fake.server.keys_seen == {KEY}
    await provider.aclose()


async def test_server_ignoring_n_falls_back_to_separate_calls(fake):
    fake.configure(honor_n=False)
    client = client_for(openai_provider(fake))
    samples = await client.samples(HI, range(4), SamplingParams(0.8, 16))
    assert [s.index for s in samples] == [0, 1, 2, 3]
    assert len({s.text for s in samples}) == 4
    assert client.provider.supports_n is False
    # one probe with n=4 that came back with one choice, then three single calls
    assert fake.stats()["completed"] == 4 and client.stats.requests == 4
    more = await client.samples((Message("user", "again"),), range(3), SamplingParams(0.8, 16))
    assert len(more) == 3 and fake.stats()["completed"] == 7  # no more probing


async def test_n_splits_usage_exactly_over_samples(fake):
    client = client_for(openai_provider(fake))
    samples = await client.samples(HI, range(4), SamplingParams(0.8, 16))
    assert fake.stats()["completed"] == 1
    assert sum(s.requests for s in samples) == 1
    assert sum(s.input_tokens for s in samples) == client.stats.input_tokens == 5
    assert sum(s.output_tokens for s in samples) == client.stats.output_tokens == 20


# --- errors --------------------------------------------------------------------------------

FATAL = [(400, errors.InvalidArgument), (401, errors.Unauthenticated),
         (403, errors.PermissionDenied), (404, errors.NotFound)]


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@pytest.mark.parametrize(("status", "error"), FATAL)
async def test_client_errors_are_not_retried_and_keep_the_provider_message(
    fake, wire, status, error
):
    provider = openai_provider(fake) if wire == "openai" else anthropic_provider(fake)
    fake.push_faults({"status": status, "message": f"model says no ({status})", "times": -1})
    client = client_for(provider)
    with pytest.raises(error) as raised:
        await client.complete(CompletionRequest(HI))
    assert f"model says no ({status})" in str(raised.value)
    assert f"HTTP {status}" in str(raised.value)
    assert fake.stats()["received"] == 1 and client.stats.retries == 0


TRANSIENT = {"500": {"status": 500}, "503": {"status": 503}, "529": {"status": 529},
             "truncated": {"kind": "truncated"}, "no_choices": {"kind": "no_choices"},
             "429": {"status": 429, "retry_after": 0.05}, "timeout": {"kind": "slow", "seconds": 1}}


@pytest.mark.parametrize(("wire", "fault"), [
    pytest.param(wire, fault, id=f"{name}-{wire}") for name, fault in TRANSIENT.items()
    for wire in ("openai", "anthropic")
    if not (wire == "anthropic" and name == "no_choices")  # that wire has no choices list
])
async def test_transient_failures_are_retried(fake, wire, fault):
    make = openai_provider if wire == "openai" else anthropic_provider
    provider = make(fake, timeout_seconds=0.3)
    fake.push_faults(fault, fault)
    client = client_for(provider)
    completion, _ = await client.complete(CompletionRequest(HI))
    assert completion.choices[0].text.endswith("to: hi there")
    assert fake.stats()["received"] == 3
    assert client.stats.retries == 2 and client.stats.requests == 1
    assert client.stats.rate_limited == (2 if fault.get("status") == 429 else 0)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_a_redirect_is_not_followed(fake, wire):
    """A server may not send a call (and its key) on to an address the policy never checked."""
    from aiohttp import web

    target = fake.openai_base_url if wire == "openai" else fake.anthropic_base_url
    hits = []

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPTemporaryRedirect(f"{target}{request.path.removeprefix('/v1')}")

    app = web.Application()
    app.router.add_post("/{path:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]
        make = OpenAIProvider if wire == "openai" else AnthropicProvider
        base = f"http://127.0.0.1:{port}" + ("/v1" if wire == "openai" else "")
        client = client_for(make("m", api_key=KEY, base_url=base))
        with pytest.raises(errors.InvalidArgument, match="HTTP 307"):
            await client.complete(CompletionRequest(HI))
    finally:
        await runner.cleanup()
    assert len(hits) == 1 and client.stats.retries == 0
    assert fake.stats()["received"] == 0  # the redirect's target never saw the call


async def test_https_needs_a_certificate_from_a_trusted_ca(tmp_path, monkeypatch):
    """TLS is verified: an unknown CA's certificate is refused; with that CA in SSL_CERT_FILE
    (as a deployment with its own CA would set it) the same server answers."""
    import ssl

    import trustme
    from aiohttp import web

    from tests.fixtures.fake_provider import FakeProvider

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    runner = web.AppRunner(FakeProvider().app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    try:
        base = f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"
        untrusted = client_for(OpenAIProvider("m", api_key=KEY, base_url=base),
                               retry=RetryPolicy(0))
        with pytest.raises(errors.Unavailable, match=r"connection failed.*(?i:certificate)"):
            await untrusted.complete(CompletionRequest(HI))
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        trusted = client_for(OpenAIProvider("m", api_key=KEY, base_url=base))
        completion, _ = await trusted.complete(CompletionRequest(HI))
        assert completion.choices[0].text.endswith("to: hi there")
    finally:
        await runner.cleanup()


def test_the_environments_proxy_is_used_unless_no_proxy_names_the_host(monkeypatch):
    from services.common.providers.http_json import env_proxy

    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert env_proxy("https://api.openai.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert env_proxy("https://api.openai.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert env_proxy("http://127.0.0.1:8080/v1/chat/completions") is None  # no HTTP_PROXY
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert env_proxy("https://api.openai.com/v1/chat/completions") is None


async def test_connection_errors_are_retried_then_reported_unavailable():
    with run_fake_provider() as gone:
        url = gone.openai_base_url
    provider = OpenAIProvider("gpt-4o-mini", api_key=KEY, base_url=url)
    client = client_for(provider, retry=RetryPolicy(2, 0.01, 0.02))
    refused = r"(connection failed|Cannot connect).*gave up after 3 attempts"
    with pytest.raises(errors.Unavailable, match=refused):
        await client.complete(CompletionRequest(HI))
    assert client.stats.retries == 2


async def test_a_fatal_answer_stops_the_other_calls(fake):
    fake.configure(latency=0.05)
    fake.push_faults({"status": 403, "message": "banned"})
    client = client_for(openai_provider(fake), limits=Limits(max_concurrency=2))
    results = await asyncio.gather(
        *(client.complete(CompletionRequest((Message("user", f"q{i}"),))) for i in range(20)),
        return_exceptions=True)
    failures = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(f, errors.PermissionDenied) for f in failures)
    assert len(failures) >= 18  # only the call in flight beside the 403 could still finish
    assert fake.stats()["received"] <= 2


async def test_retries_stop_at_max_retries(fake):
    fake.push_faults({"status": 502, "message": "bad gateway", "times": -1})
    client = client_for(openai_provider(fake), retry=RetryPolicy(4, 0.01, 0.02))
    with pytest.raises(errors.Unavailable, match=r"HTTP 502: bad gateway.*after 5 attempts"):
        await client.complete(CompletionRequest(HI))
    assert fake.stats()["received"] == 5


async def test_persistent_429_ends_resource_exhausted(fake):
    fake.push_faults({"status": 429, "retry_after": 0.01, "times": -1})
    client = client_for(openai_provider(fake), retry=RetryPolicy(2, 0.01, 0.02))
    with pytest.raises(errors.ResourceExhausted, match="HTTP 429"):
        await client.complete(CompletionRequest(HI))
    assert client.stats.rate_limited == 3


def test_backoff_is_exponential_jittered_and_capped():
    policy = RetryPolicy(max_retries=10, base_delay=1.0, max_delay=8.0)
    delays = {attempt: [policy.delay(attempt) for _ in range(200)] for attempt in (1, 2, 3, 6)}
    assert 0.5 <= min(delays[1]) and max(delays[1]) <= 1.0
    assert 1.0 <= min(delays[2]) and max(delays[2]) <= 2.0
    assert 2.0 <= min(delays[3]) and max(delays[3]) <= 4.0
    assert 4.0 <= min(delays[6]) and max(delays[6]) <= 8.0  # capped
    assert len(set(delays[3])) > 150  # jittered
    # the provider's Retry-After wins (a little later, spread)
    assert all(0.25 <= policy.delay(3, retry_after=0.25) <= 0.275 for _ in range(50))


async def test_retry_after_pauses_all_dispatch(fake):
    """One 429 with Retry-After 0.6 s: no call at all reaches the server during the pause."""
    fake.configure(latency=0.02)
    client = client_for(openai_provider(fake), limits=Limits(max_concurrency=4))
    params = SamplingParams(0.8, 8)

    async def run(i):
        if i == 12:
            fake.push_faults({"status": 429, "retry_after": 0.6})
        return await client.samples((Message("user", f"q{i}"),), [0], params)

    started = time.monotonic()
    results = await asyncio.gather(*(run(i) for i in range(40)))
    assert len(results) == 40 and client.stats.rate_limited == 1
    stats = fake.stats()
    assert stats["rate_limited"] == 1 and client.limiter.pauses == 1
    # The client paused at `paused` (the same system-wide clock as the fake's). Only calls that
    # had their slot before then may arrive during the pause, however late a loaded machine
    # delivers them: at most the other max_concurrency - 1 = 3; none dispatched after it.
    resumed = client.limiter._paused_until
    paused = resumed - 0.6
    in_pause = [t for t in stats["arrivals"] if paused < t < resumed]
    assert len(in_pause) <= 3
    assert any(t >= resumed for t in stats["arrivals"])  # and calls resumed after it
    assert time.monotonic() - started >= 0.6


# --- the rate limiter ----------------------------------------------------------------------


async def test_concurrency_is_bounded(fake):
    fake.configure(latency=0.05)
    client = client_for(openai_provider(fake), limits=Limits(max_concurrency=5))
    await asyncio.gather(*(
        client.samples((Message("user", f"q{i}"),), [0], SamplingParams(0.8, 8))
        for i in range(40)))
    assert fake.stats()["max_in_flight"] == 5


async def test_requests_per_minute_pacing_meets_a_server_enforced_limit(fake):
    fake.configure(rpm=1200, rpm_burst_seconds=0.5)  # 20/s, bursts of 10
    client = client_for(openai_provider(fake),
                        limits=Limits(max_concurrency=16, requests_per_minute=1200))
    started = time.monotonic()
    await asyncio.gather(*(
        client.samples((Message("user", f"q{i}"),), [0], SamplingParams(0.8, 8))
        for i in range(30)))
    elapsed = time.monotonic() - started
    assert fake.stats()["rate_limited"] == 0
    # Paced (one every 50 ms), not burst: 10 at once then 20/s would take 1.0 s. A loaded
    # machine only makes it slower; arrival gaps are not checked, since it can bunch arrivals
    # of calls dispatched 50 ms apart.
    assert elapsed >= 29 / 20 * 0.95


async def test_without_the_client_limiter_the_server_would_answer_429(fake):
    fake.configure(rpm=1200, rpm_burst_seconds=0.5)
    client = client_for(openai_provider(fake), limits=Limits(max_concurrency=16),
                        retry=RetryPolicy(2, 0.01, 0.05))
    await asyncio.gather(*(
        client.samples((Message("user", f"q{i}"),), [0], SamplingParams(0.8, 8))
        for i in range(30)), return_exceptions=True)
    assert fake.stats()["rate_limited"] > 0  # the control for the test above


async def test_tokens_per_minute_budget():
    limiter = RateLimiter(Limits(max_concurrency=64, tokens_per_minute=60_000))  # 1000/s
    started = time.monotonic()
    for _ in range(10):
        async with limiter.slot(200) as slot:
            slot.actual_tokens = 200
    elapsed = time.monotonic() - started
    # 2000 tokens with a 1000-token burst allowance: at least about one second (a loaded
    # machine only adds to it)
    assert elapsed >= 0.8
    # unused estimate is given back: 10 calls that used nothing never have to wait
    limiter = RateLimiter(Limits(max_concurrency=64, tokens_per_minute=60_000))
    for _ in range(10):
        assert limiter._tokens.delay(time.monotonic()) <= 0
        async with limiter.slot(500) as slot:
            slot.actual_tokens = 0


# --- cache, cost, keys ---------------------------------------------------------------------


async def test_cache_makes_reruns_free_and_keys_on_parameters_and_index(fake, tmp_path):
    cache = TeacherCache(open_store(f"file://{tmp_path}"))
    client = client_for(openai_provider(fake), cache=cache)
    first = await client.samples(HI, range(3), SamplingParams(0.8, 16))
    assert fake.stats()["completed_samples"] == 3
    assert len(list(cache.store.list(PREFIX))) == 3

    again = client_for(openai_provider(fake), cache=cache)
    second = await again.samples(HI, range(3), SamplingParams(0.8, 16))
    assert [s.text for s in second] == [s.text for s in first]
    assert all(s.cached for s in second) and again.stats.cached_requests == 3
    assert again.stats.requests == 0 and again.stats.cost_usd == 0
    assert fake.stats()["completed_samples"] == 3

    more = await again.samples(HI, range(5), SamplingParams(0.8, 16))  # two new indices
    assert [s.cached for s in more] == [True, True, True, False, False]
    await again.samples(HI, range(1), SamplingParams(0.7, 16))  # another temperature: a miss
    await again.samples(HI, range(1), SamplingParams(0.8, 17))  # another max_tokens: a miss
    assert fake.stats()["completed_samples"] == 3 + 2 + 1 + 1


async def test_teacher_cache_on_s3(fake, s3_server):
    bucket = f"cache-{uuid.uuid4().hex[:12]}"
    store = open_store(f"s3://{bucket}", **s3_server.store_settings())
    cache = TeacherCache(store)
    client = client_for(openai_provider(fake), cache=cache)
    await client.samples(HI, range(2), SamplingParams(0.8, 16))
    keys = list(store.list(PREFIX))
    assert len(keys) == 2 and all(k.endswith(".json") and len(k) == len(PREFIX) + 64 + 5
                                  for k in keys)
    rerun = client_for(openai_provider(fake), cache=TeacherCache(store))
    await rerun.samples(HI, range(2), SamplingParams(0.8, 16))
    assert rerun.stats.requests == 0 and fake.stats()["completed"] == 1
    assert KEY.encode() not in b"".join(store.get_bytes(k) for k in keys)


async def test_cache_io_runs_in_bounded_parallel_batches_with_errors_to_their_caller():
    """Many cache calls at once take a few thread hops, at most `threads` side by side and
    `max_batch` calls each; a failing call fails only its own caller."""
    from services.common.teacher_cache import _Batches

    batches = _Batches(threads=3, max_batch=4, idle_seconds=0.2)
    running = peak = 0
    threads: set[int] = set()
    lock = threading.Lock()

    def call(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            threads.add(threading.get_ident())
        time.sleep(0.01)  # slow, like a busy filesystem: the batches must overlap
        with lock:
            running -= 1
        if i == 7:
            raise ValueError("entry 7 is damaged")
        return i * i

    outcomes = await asyncio.gather(*(batches.run(call, i) for i in range(40)),
                                    return_exceptions=True)
    assert [o for i, o in enumerate(outcomes) if i != 7] == [i * i for i in range(40) if i != 7]
    assert isinstance(outcomes[7], ValueError) and "entry 7" in str(outcomes[7])
    assert peak == 3  # three batches overlapped, never a fourth
    assert len(threads) >= 3
    await async_wait_for(lambda: batches._running == 0, "idle threads ended")  # idle_seconds
    assert await batches.run(call, 2) == 4  # and start again for new work


async def test_cost_from_usage_and_price_overrides(fake):
    registry = client_for(openai_provider(fake), price=price_for("gpt-4o-mini"))
    await registry.complete(CompletionRequest(HI, max_tokens=8))
    assert registry.stats.input_tokens == 5 and registry.stats.output_tokens == 5
    assert registry.stats.cost_usd == pytest.approx((5 * 0.15 + 5 * 0.60) / 1e6)
    spec = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                output_usd_per_mtok=100.0)
    config = resolve_model_spec(spec, field="teacher", default_temperature=0.8)
    assert (config.price.input_usd_per_mtok, config.price.output_usd_per_mtok) == (0.15, 100.0)
    override = client_for(openai_provider(fake), price=config.price)
    await override.complete(CompletionRequest(HI, max_tokens=8))
    assert override.stats.cost_usd == pytest.approx((5 * 0.15 + 5 * 100.0) / 1e6)
    table = resolve_model_spec(spec, field="teacher", default_temperature=0.8,
                               price_overrides={"gpt-4o-mini": (1.0, 2.0)})
    assert table.price.input_usd_per_mtok == 1.0  # settings table, then the spec's own field


async def test_api_key_never_leaves_the_provider(fake, caplog):
    fake.configure(api_key="the-right-key")  # ours is wrong: the 401 echoes it back
    caplog.set_level(logging.DEBUG)
    client = client_for(openai_provider(fake))
    with pytest.raises(errors.Unauthenticated) as raised:
        await client.complete(CompletionRequest(HI))
    assert "Incorrect API key provided" in str(raised.value)
    assert KEY not in str(raised.value) and KEY not in repr(raised.value.args)
    assert fake.server.keys_seen == {KEY}  # it was sent, and only to the provider
    fake.configure(api_key="")
    fake.push_faults({"status": 500, "message": f"upstream failed for key {KEY}"})
    await client_for(openai_provider(fake)).complete(CompletionRequest(HI))  # retried, logged
    assert "teacher call failed; retrying" in caplog.text
    assert KEY not in caplog.text


# --- spec resolution -----------------------------------------------------------------------


def spec(**kw) -> common_pb2.ModelSpec:
    return common_pb2.ModelSpec(**kw)


def test_registry_shortcuts_resolve_provider_and_model_id():
    config = bind_endpoint(resolve_model_spec(spec(model="claude-sonnet"), field="teacher",
                                              default_temperature=0.8),
                           EndpointPolicy(), field="teacher")
    assert (config.provider, config.model, config.api_key_env, config.endpoint) == (
        "anthropic", "claude-sonnet-4-5", "ANTHROPIC_API_KEY", "anthropic")
    assert config.temperature == 0.8 and config.max_tokens == 512
    assert config.timeout_seconds == 60 and config.price.output_usd_per_mtok == 15.0
    custom = resolve_model_spec(
        spec(provider=common_pb2.PROVIDER_OPENAI, model="my-model",
             base_url="http://127.0.0.1:1/v1", temperature=0.0), field="judge.model",
        default_temperature=0.8)
    assert custom.model == "my-model" and custom.api_key_env == ""  # keyless local server
    assert custom.temperature == 0.0 and not custom.price.known


@pytest.mark.parametrize(("kw", "error", "fragment"), [
    ({"model": "mystery"}, errors.InvalidArgument, "teacher.provider"),
    ({"provider": common_pb2.PROVIDER_OPENAI}, errors.InvalidArgument, "teacher.model"),
    ({"model": "gpt-4o", "temperature": 3.0}, errors.InvalidArgument, "teacher.temperature"),
    ({"model": "gpt-4o", "max_tokens": 0}, errors.InvalidArgument, "teacher.max_tokens"),
    ({"model": "gpt-4o", "top_p": 1.5}, errors.InvalidArgument, "teacher.top_p"),
    ({"model": "gpt-4o", "timeout_seconds": -1}, errors.InvalidArgument, "teacher.timeout"),
    ({"model": "gpt-4o", "base_url": "ftp://x"}, errors.InvalidArgument, "teacher.base_url"),
    ({"model": "gpt-4o", "input_usd_per_mtok": -1}, errors.InvalidArgument, "input_usd"),
    ({"provider": common_pb2.PROVIDER_LOCAL, "model": "/nope/x.gguf"}, errors.NotFound, "GGUF"),
    ({"provider": common_pb2.PROVIDER_LOCAL, "model": "/etc/passwd"}, errors.InvalidArgument,
     ".gguf"),
])
def test_bad_specs_name_the_field(kw, error, fragment):
    with pytest.raises(error, match=fragment):
        resolve_model_spec(spec(**kw), field="teacher", default_temperature=0.8)


def test_api_key_env_rules():
    """The key is the configured endpoint's: a spec may repeat its variable, never name another
    of the server's variables (the store's S3 secret, say) to have it sent along."""
    policy = EndpointPolicy({"openai": ProviderEndpoint(provider="openai",
                                                         api_key_env="TEAM_OPENAI_API_KEY")})
    config = authorize(resolve_model_spec(spec(model="gpt-4o", api_key_env="TEAM_OPENAI_API_KEY"),
                                          field="teacher", default_temperature=0.8),
                       policy, field="teacher")
    assert read_api_key(config, field="teacher", environ={"TEAM_OPENAI_API_KEY": KEY}) == KEY
    with pytest.raises(errors.FailedPrecondition, match="TEAM_OPENAI_API_KEY is not set") as e:
        read_api_key(config, field="teacher", environ={})
    assert KEY not in str(e.value)
    for name in ("DISTILL_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "HOME"):
        stolen = resolve_model_spec(spec(model="gpt-4o", api_key_env=name), field="teacher",
                                    default_temperature=0.8)
        with pytest.raises(errors.PermissionDenied, match="not the key configured"):
            open_provider(stolen, field="teacher", policy=policy,
                          environ={name: "server secret"})
