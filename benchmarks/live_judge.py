"""Live judging off the request's path (issue 22): a teacher alias through the router, with and
without an LLM live judge scoring every answer.

    .venv/bin/python -m benchmarks.live_judge [--requests 300 --concurrency 8 --latency 0.05]

The fake provider (`tests/fixtures/fake_provider.py`, `--latency` per call, teacher and judge
alike; the judge model answers a rubric grade), the gateway and the router run as real processes
on loopback over a `file://` store. Each of `--rounds` rounds sends `--requests` fresh requests at
`--concurrency` through the official `openai` SDK to (a) an alias without a judge, then (b) the
same teacher behind an alias whose LLM judge scores every answer (`sampleRate` 1: one judge call
per answer), waiting between them until the judge has finished with (b)'s answers.
Measured: requests/s of (b) over (a) (target >= 0.95: the caller does not pay for the judge),
p50/p95 latency both ways, the router process's CPU per request both ways (the judge's calls
included: its work is off the request's path, not free), and what the judge did (scored,
dropped) and cost, from the router's metrics. Ends with `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import openai

from benchmarks.cpu import cpu_seconds
from benchmarks.generator_fanout import start_fake
from benchmarks.result import emit
from distill.client import Distiller
from distill.local_suite import ServiceProcess, start_service, stop_process
from distill.v1 import common_pb2, gateway_pb2
from tests.fixtures.fake_provider import FakeProviderHandle

KEY_ENV = "FAKE_API_KEY"
KEY = "sk-fake-live-judge-benchmark"
TARGET_RATIO = 0.95
GRADE = json.dumps({"scores": {"correctness": 8, "instruction_following": 8, "conciseness": 8},
                    "rationale": "ok"})


def teacher(fake: FakeProviderHandle, model: str) -> common_pb2.ModelSpec:
    return common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model=model,
                                base_url=fake.openai_base_url, api_key_env=KEY_ENV, max_tokens=16)


async def load(url: str, alias: str, tag: str, requests: int, concurrency: int) -> dict:
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with slots:
            started = time.perf_counter()
            await client.chat.completions.create(model=alias, max_tokens=16, messages=[
                {"role": "user", "content": f"{tag} review {i}: positive or negative?"}])
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    elapsed = time.perf_counter() - started
    await client.close()
    ordered = sorted(latencies)
    return {"requests_per_second": requests / elapsed,
            "p50_ms": statistics.median(ordered) * 1000,
            "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000}


def judged(metrics_url: str) -> dict[str, float]:
    """distill_router_judged_total by outcome, and the judge's spend, for the judged alias."""
    text = httpx.get(metrics_url, timeout=30, trust_env=False).text
    out = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'distill_router_judged_total\{alias="judged",outcome="(\w+)",version="1"\} (\S+)', text)}
    spent = re.search(r'distill_router_judge_cost_usd_total\{alias="judged",version="1"\} (\S+)',
                      text)
    out["cost_usd"] = float(spent.group(1)) if spent else 0.0
    return out


def wait_until(condition, what, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what()}")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fake_proc, fake = start_fake(args.latency)
    fake.configure(model_replies={"gpt-4o-mini": ["positive"], "gpt-4o": [GRADE]})
    services: list[ServiceProcess] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DISTILL_STORE_URL": f"file://{tmp}/store",
               "DISTILL_GRACE_SECONDS": "2", "DISTILL_GATEWAY_DB_PATH": f"{tmp}/gateway.db",
               KEY_ENV: KEY, **fake.env(KEY_ENV)}
        try:
            gateway = start_service("services.gateway", 0, Path(tmp, "logs"), env)
            services.append(gateway)
            gateway.wait_healthy()
            router = start_service("services.router", 0, Path(tmp, "logs"), {
                **env, "DISTILL_ROUTER_GATEWAY_ADDRESS": gateway.address,
                "DISTILL_ROUTER_HTTP_PORT": "0", "DISTILL_ROUTER_TRACE_FLUSH_SECONDS": "1"})
            services.append(router)
            router.wait_healthy()
            serving = router.serving_event()
            url = f"http://127.0.0.1:{serving['http_port']}/v1"
            metrics_url = f"http://127.0.0.1:{serving['metrics_port']}/metrics"
            with Distiller(gateway.address) as client:
                client.set_alias("plain", target=gateway_pb2.AliasTarget(
                    teacher=teacher(fake, "gpt-4o-mini")))
                judge = {"llm": {"model": {"provider": "PROVIDER_OPENAI", "model": "gpt-4o",
                                           "baseUrl": fake.openai_base_url, "apiKeyEnv": KEY_ENV,
                                           "maxTokens": 128}}}
                client.set_alias("judged", target=gateway_pb2.AliasTarget(
                    teacher=teacher(fake, "gpt-4o-mini")), routing={"judge": {"judge": judge}})
            # Warm: each alias's clients (the teacher's, the judge's) are made on first use.
            for alias in ("plain", "judged"):
                asyncio.run(load(url, alias, "warm", args.concurrency, args.concurrency))
            rounds = []
            for r in range(args.rounds):
                cpu = cpu_seconds(router.proc.pid)
                plain = asyncio.run(load(url, "plain", f"a{r}", args.requests, args.concurrency))
                plain["router_cpu_ms_per_request"] = (
                    cpu_seconds(router.proc.pid) - cpu) / args.requests * 1000
                cpu = cpu_seconds(router.proc.pid)
                with_judge = asyncio.run(load(url, "judged", f"b{r}", args.requests,
                                              args.concurrency))
                done = (r + 1) * args.requests + args.concurrency
                wait_until(lambda n=done: sum(v for k, v in judged(metrics_url).items()
                                              if k != "cost_usd") >= n,
                           lambda: f"the judge to finish: {judged(metrics_url)}")
                with_judge["router_cpu_ms_per_request"] = (
                    cpu_seconds(router.proc.pid) - cpu) / args.requests * 1000
                rounds.append({"plain": plain, "judged": with_judge,
                               "ratio": with_judge["requests_per_second"]
                               / plain["requests_per_second"]})
                print(json.dumps(rounds[-1]), flush=True)
            outcome = judged(metrics_url)
        finally:
            for service in reversed(services):
                stop_process(service.proc)
            stop_process(fake_proc)
    ratio = statistics.median(r["ratio"] for r in rounds)
    figures = {
        "requests": args.requests, "concurrency": args.concurrency,
        "provider_latency_s": args.latency, "rounds": rounds, "median_ratio": round(ratio, 3),
        "judged": {k: v for k, v in outcome.items() if k != "cost_usd"},
        "judge_cost_usd": round(outcome["cost_usd"], 6),
        "pass": ratio >= TARGET_RATIO,
    }
    emit("live_judge", figures)
    return 0 if figures["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
