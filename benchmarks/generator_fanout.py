"""Generator fan-out against the fake provider server (fixed latency), through the real
generation code path (Generation + ModelClient + OpenAI provider + rate limiter + teacher cache).

    .venv/bin/python -m benchmarks.generator_fanout [--requests 1000 --concurrency 64]

(a) `requests` calls at `concurrency`: achieved requests/s over the ideal concurrency/latency
    (target >= 0.90), and the speed-up over a one-call-at-a-time loop (the loop is measured on
    `--serial-requests` calls and its per-call time extrapolated to `requests`). The job runs as
    the service runs it, its calls in `--call-processes` call processes (the generator's
    teacher_processes), then once more with every call in this process (`a_one_process_*`);
(b) the server enforcing `--rpm` requests/minute, the client limiter set to the same: achieved
    over rpm/60 (target >= 0.90) with under 1% of requests answered 429;
(c) job (a) again: zero provider calls (all from the teacher cache).
The fake server runs as its own process so it does not share this one's interpreter lock.

Beside (a), two ceilings on the same machine at the same concurrency: the OpenAI provider alone
(the call the generator makes, without limiter, cache or stream) and bare aiohttp POSTs. They
show how much of the gap to the ideal is the machine and the provider, and how much is the
generator. `store_file_create_us` is what creating one small file in the store's folder cost
just before (a): on ext4 it rises far above its usual ~60 us for a while after many files were
deleted, and each cache entry creates two. `a_call_latency_*` is a provider call's time in (a) as
the job saw it (request sent to answer back; the server waits a fixed `--latency`), beside the same
for the provider alone: over all calls, the first wave (all leave at once and queue for the CPU)
and the calls started after 5 latencies (spread out); `a_gc_pause_*` is the garbage collector's
pauses in this process during (a), after startup's objects were frozen as a service freezes them
(services/common/heap.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.cpu import cpu_seconds
from benchmarks.result import emit
from distill.v1 import common_pb2, generator_pb2
from services.common.auth import DEFAULT_PROJECT
from services.common.heap import freeze_startup_objects
from services.common.providers import CompletionRequest, Message, open_provider
from services.common.providers.call_processes import CallProcesses
from services.common.storage import LocalStore
from services.common.teacher_cache_keys import KeyLog
from services.generator.generation import Generation, plan
from services.generator.server import teacher_client
from services.generator.settings import GeneratorSettings
from tests.fixtures.fake_provider import FakeProviderHandle

REPO = Path(__file__).resolve().parents[1]
# The fake teacher is a spec's own base_url on loopback, called without a key.
SETTINGS = GeneratorSettings(allowed_base_url_hosts=["127.0.0.1"], allow_loopback_addresses=True)


def start_fake(latency: float) -> tuple[subprocess.Popen, FakeProviderHandle]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.fake_provider", "--latency", str(latency)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"fake provider did not start: {line!r}")
    return proc, FakeProviderHandle(line.split(" ", 1)[1])


def job_request(fake: FakeProviderHandle, count: int, prefix: str, concurrency: int,
                rpm: int = 0) -> generator_pb2.GenerateRequest:
    prompts = [common_pb2.Prompt(id=f"p{i}", messages=[common_pb2.ChatMessage(
        role=common_pb2.ROLE_USER, content=f"{prefix} question {i}")]) for i in range(count)]
    return generator_pb2.GenerateRequest(
        prompts=generator_pb2.InlinePrompts(prompts=prompts), n_samples=1, job_id=prefix,
        teacher=common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                     base_url=fake.openai_base_url, max_tokens=64),
        limits=common_pb2.RateLimits(max_concurrency=concurrency, requests_per_minute=rpm))


class CollectorPauses:
    """The cyclic garbage collector's pauses in this process while in use (every call in
    flight waits them out)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __enter__(self) -> CollectorPauses:
        gc.callbacks.append(self._track)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._track)

    def _track(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)


async def run_job(store: LocalStore, request: generator_pb2.GenerateRequest,
                  processes: CallProcesses | None) -> dict:
    """One generation exactly as the servicer runs it (with its call processes, or with none);
    returns wall time, the summary, CPU seconds of this process and of the call processes, this
    process's collector pauses and each provider call as the job saw it: (seconds from the
    job's start to the call's, its latency). The start is the group's arrival less the call's
    latency, a little late by the cache write between them."""
    job = plan(request, store, max_concurrency=1024)
    used = KeyLog()
    client = teacher_client(job, job.committee[0], SETTINGS, store, processes, DEFAULT_PROJECT,
                            used)
    started, cpu_started = time.perf_counter(), time.process_time()
    helpers_cpu = call_processes_cpu(processes)
    calls: list[tuple[float, float]] = []
    try:
        with CollectorPauses() as collector:
            async for event in Generation(job, [client], store, used=used).events():
                kind = event.WhichOneof("event")
                if kind == "group":
                    now = time.perf_counter() - started
                    calls += [(now - c.latency_seconds, c.latency_seconds)
                              for c in event.group.candidates if not c.cached]
                elif kind == "summary":
                    summary = event.summary
    finally:
        await client.aclose()
        used.close()
    return {"elapsed": time.perf_counter() - started, "summary": summary,
            "retries": client.stats.retries, "cpu": time.process_time() - cpu_started,
            "helpers_cpu": call_processes_cpu(processes) - helpers_cpu,
            "gc_pauses": collector.pauses, "call_times": calls}


def percentiles_ms(name: str, seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {f"{name}_{label}_ms": round(ordered[int(q * (len(ordered) - 1))] * 1000, 1)
            for label, q in (("p50", 0.5), ("p95", 0.95)) if ordered}


def call_latency_figures(name: str, calls: list[tuple[float, float]], latency: float) -> dict:
    """Percentiles of all calls, of the first wave (calls started before one server latency
    had passed: they all left at once) and of the calls started after five (spread out)."""
    return {
        **percentiles_ms(name, [took for _, took in calls]),
        **percentiles_ms(f"{name}_first_wave", [took for start, took in calls if start < latency]),
        **percentiles_ms(f"{name}_steady", [took for start, took in calls if start >= 5 * latency]),
    }


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda run: run["elapsed"])[len(runs) // 2]


def call_processes_cpu(processes: CallProcesses | None) -> float:
    """CPU seconds the running call processes have used so far."""
    return sum(cpu_seconds(pid) for pid in (processes.pids() if processes is not None else []))


async def ceilings(store: LocalStore, fake: FakeProviderHandle, requests: int,
                   concurrency: int, latency: float) -> dict:
    """Requests/s of the provider alone and of bare HTTP, as ratios of the ideal."""
    spec = plan(job_request(fake, 1, "ceiling", concurrency), store, max_concurrency=1024).teacher
    provider = open_provider(spec, field="teacher", policy=SETTINGS.endpoint_policy())
    url = fake.openai_base_url.rstrip("/") + "/chat/completions"
    ideal = concurrency / latency

    measured_from = 0.0

    async def timed(call) -> float:
        nonlocal measured_from
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await call(i)

        await asyncio.gather(*(one(i) for i in range(concurrency)))  # connections
        measured_from = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        return round(requests / (time.perf_counter() - measured_from) / ideal, 3)

    call_times: list[tuple[float, float]] = []  # (start, latency) as in run_job

    async def via_provider(i: int) -> None:
        started = time.perf_counter()
        await provider.complete(CompletionRequest((Message("user", f"ceiling {i}"),), 0.8, 64))
        call_times.append((started - measured_from, time.perf_counter() - started))

    try:
        provider_only = await timed(via_provider)
    finally:
        await provider.aclose()
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer unused"}) as session:
        async def bare(i: int) -> None:
            body = {"model": spec.model, "max_tokens": 64, "temperature": 0.8,
                    "messages": [{"role": "user", "content": f"bare {i}"}]}
            async with session.post(url, json=body) as response:
                await response.json()

        http = await timed(bare)
    return {"a_ceiling_provider_only_ratio": provider_only, "a_ceiling_bare_http_ratio": http,
            **call_latency_figures("a_ceiling_provider_only_latency",
                                   call_times[concurrency:], latency)}


def file_create_us(folder: str, count: int = 200) -> float:
    """Microseconds to create, write and rename one small file in `folder` (then removed)."""
    probe = Path(folder) / "fs-probe"
    probe.mkdir()
    started = time.perf_counter()
    for i in range(count):
        (probe / f"{i}.tmp").write_bytes(b"x" * 300)
        os.replace(probe / f"{i}.tmp", probe / f"{i}.json")
    elapsed = time.perf_counter() - started
    for path in probe.iterdir():
        path.unlink()
    probe.rmdir()
    return round(elapsed / count * 1e6, 1)


async def main(args: argparse.Namespace) -> None:
    proc, fake = start_fake(args.latency)
    # The fan-out is CPU-bound on a small machine: record how busy it was.
    figures: dict = {"latency_s": args.latency, "load_average_1m": round(os.getloadavg()[0], 2),
                     "call_processes": args.call_processes}
    processes = CallProcesses(args.call_processes) if args.call_processes else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalStore(tmp)
            # imports, connections; the call processes started
            await run_job(store, job_request(fake, 64, "warmup", 64), processes)
            await run_job(store, job_request(fake, 64, "warmup-1", 64), None)
            freeze_startup_objects()  # as a service process does once it serves

            # (a) fan-out, as the service runs it and with every call in this process, in
            # alternating rounds (the machine's state drifts between runs); medians reported
            figures["store_file_create_us"] = file_create_us(tmp)
            ideal = args.concurrency / args.latency
            runs: dict[str, list[dict]] = {"processes": [], "one": []}
            for r in range(args.rounds):
                for kind, pool in (("processes", processes), ("one", None)):
                    before, server_cpu = fake.stats()["received"], cpu_seconds(proc.pid)
                    run = await run_job(store, job_request(
                        fake, args.requests, f"fanout-{kind}-{r}", args.concurrency), pool)
                    run["calls"] = fake.stats()["received"] - before
                    run["server_cpu"] = cpu_seconds(proc.pid) - server_cpu
                    run["ratio"] = round(args.requests / run["elapsed"] / ideal, 3)
                    runs[kind].append(run)
            a = median_run(runs["processes"])
            one = median_run(runs["one"])
            calls, server_cpu = a["calls"], a["server_cpu"]
            achieved = args.requests / a["elapsed"]
            serial = await run_job(store, job_request(fake, args.serial_requests, "serial", 1),
                                   processes)
            per_call = serial["elapsed"] / args.serial_requests
            figures.update({
                "a_requests": args.requests, "a_provider_calls": calls,
                "a_concurrency": args.concurrency, "a_elapsed_s": round(a["elapsed"], 3),
                "a_achieved_rps": round(achieved, 1), "a_ideal_rps": round(ideal, 1),
                "a_ratio": round(achieved / ideal, 3), "a_target_ratio": 0.90,
                "a_ratios": [run["ratio"] for run in runs["processes"]],
                # the same job with no call processes (teacher_processes 0)
                "a_one_process_ratio": one["ratio"],
                "a_one_process_ratios": [run["ratio"] for run in runs["one"]],
                "a_one_process_cpu_ms_per_request": round(one["cpu"] / args.requests * 1000, 2),
                # a provider call's time (request sent to answer back, in this process) over
                # that run, against the server's fixed latency
                **call_latency_figures("a_call_latency", a["call_times"], args.latency),
                # this process's collector pauses in that run, all and the longest
                "a_gc_pause_ms_total": round(sum(a["gc_pauses"]) * 1000, 1),
                "a_gc_pause_ms_max": round(max(a["gc_pauses"], default=0) * 1000, 1),
                "a_call_processes_cpu_ms_per_request": round(
                    a["helpers_cpu"] / args.requests * 1000, 2),
                # this process's CPU per call (provider, limiter, cache write, protobuf): at x ms
                # one core sustains at most 1000/x calls/s
                "a_client_cpu_ms_per_request": round(a["cpu"] / args.requests * 1000, 2),
                # the fake server shares this machine's cores
                "a_server_cpu_ms_per_request": round(server_cpu / args.requests * 1000, 2),
                "a_serial_measured_requests": args.serial_requests,
                "a_serial_per_request_s": round(per_call, 4),
                "a_serial_extrapolated_s": round(per_call * args.requests, 1),
                "a_speedup": round(per_call * args.requests / a["elapsed"], 1),
                **await ceilings(store, fake, args.requests, args.concurrency, args.latency),
            })

            # (b) at a server-enforced rate limit
            fake.configure(rpm=args.rpm, rpm_burst_seconds=1.0)
            before = fake.stats()
            b = await run_job(store, job_request(fake, args.rpm_requests, "ratelimited",
                                                 args.concurrency, rpm=args.rpm), processes)
            after = fake.stats()
            received = after["received"] - before["received"]
            limited = after["rate_limited"] - before["rate_limited"]
            achieved_b = args.rpm_requests / b["elapsed"]
            figures.update({
                "b_requests": args.rpm_requests, "b_rpm": args.rpm,
                "b_elapsed_s": round(b["elapsed"], 3), "b_achieved_rps": round(achieved_b, 2),
                "b_ideal_rps": args.rpm / 60, "b_ratio": round(achieved_b / (args.rpm / 60), 3),
                "b_target_ratio": 0.90, "b_received": received, "b_answered_429": limited,
                "b_429_fraction": round(limited / received, 4), "b_target_429_fraction": 0.01,
            })
            fake.configure(rpm=0)

            # (c) job (a) again
            before = fake.stats()["received"]
            c = await run_job(store, job_request(
                fake, args.requests, "fanout-processes-0", args.concurrency), processes)
            figures.update({
                "c_provider_calls": fake.stats()["received"] - before,
                "c_cached_requests": c["summary"].usage.cached_requests,
                "c_elapsed_s": round(c["elapsed"], 3), "c_target_provider_calls": 0,
            })
    finally:
        if processes is not None:
            await processes.aclose()
        proc.terminate()
        proc.wait(10)
    figures["pass"] = (figures["a_ratio"] >= 0.90 and figures["b_ratio"] >= 0.90
                       and figures["b_429_fraction"] < 0.01 and figures["c_provider_calls"] == 0)
    emit("generator_fanout", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--serial-requests", type=int, default=25)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--rpm-requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3,
                        help="(a) runs of each kind, alternating; medians reported")
    parser.add_argument("--call-processes", type=int,
                        default=GeneratorSettings().call_process_count(),
                        help="the generator's teacher_processes (default: its default here)")
    asyncio.run(main(parser.parse_args()))
