"""Generation and judging pipelined through gRPC versus generation alone.

    .venv/bin/python -m benchmarks.judge_pipeline [--prompts 200 --samples 4 --concurrency 4]

The fake provider server (`tests.fixtures.fake_provider`, fixed latency for every call), the
generator and the judge run as separate real processes on loopback, sharing one temporary
`file://` store. Each round measures, on fresh prompts (the teacher cache never helps):

(1) generation alone: `GeneratorService.Generate` over gRPC, the stream consumed to its summary;
(2) pipelined: `services.gateway.stages.generate_and_judge`, the gateway's own code path, which
    pipes every candidate group into the judge's bidi stream as it arrives; an LLM judge (one
    model call per candidate) on the same fake server, ending with the curated artifact.

Target: wall time (2) / (1) <= 1.10 (the median over the rounds): judging hides behind
generation. The fake server's `replies` answer every request, the teacher's too, so the
candidates are themselves valid judge replies; that changes nothing in the timing. The teacher
honours `n`, so the generator makes one call per prompt while the judge makes one per candidate:
the judge needs `samples` times the generator's call concurrency to keep pace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

from benchmarks.cpu import cpu_seconds
from benchmarks.generator_fanout import start_fake
from benchmarks.result import emit
from distill.local_suite import ServiceProcess, start_service, stop_process
from distill.v1 import common_pb2, generator_pb2, generator_pb2_grpc, judge_pb2
from services.common.spend import Spend
from services.gateway.stages import StageClients, generate_and_judge
from tests.fixtures.fake_provider import FakeProviderHandle

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "FAKE_API_KEY"
KEY = "sk-fake-benchmark"
TARGET_RATIO = 1.10
# Valid judge replies (default rubric), different scores so selection has something to do.
REPLIES = [
    json.dumps({"scores": {"correctness": c, "instruction_following": i, "conciseness": k},
                "rationale": "ok"})
    for c, i, k in ((8, 8, 8), (6, 7, 9), (9, 5, 4), (3, 4, 6))
]

def model(fake: FakeProviderHandle, max_tokens: int) -> common_pb2.ModelSpec:
    return common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                base_url=fake.openai_base_url, api_key_env=KEY_ENV,
                                max_tokens=max_tokens)


def generate_request(fake: FakeProviderHandle, args: argparse.Namespace, job: str,
                     prompts: int | None = None) -> generator_pb2.GenerateRequest:
    count = args.prompts if prompts is None else prompts
    items = [common_pb2.Prompt(id=f"p{i}", messages=[common_pb2.ChatMessage(
        role=common_pb2.ROLE_USER, content=f"{job}: question number {i}")]) for i in range(count)]
    return generator_pb2.GenerateRequest(
        prompts=generator_pb2.InlinePrompts(prompts=items), n_samples=args.samples, job_id=job,
        teacher=model(fake, 64),
        limits=common_pb2.RateLimits(max_concurrency=args.concurrency))


def judge_config(fake: FakeProviderHandle, job: str) -> judge_pb2.JudgeConfig:
    return judge_pb2.JudgeConfig(
        judge=common_pb2.JudgeSpec(llm=common_pb2.LlmJudge(model=model(fake, 128))),
        top_k=2, job_id=job)


async def generate_alone(address: str, request: generator_pb2.GenerateRequest) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        groups = candidates = 0
        summary = None
        started = time.perf_counter()
        async for event in stub.Generate(request):
            kind = event.WhichOneof("event")
            if kind == "group":
                groups += 1
                candidates += len(event.group.candidates)
            elif kind == "summary":
                summary = event.summary
        elapsed = time.perf_counter() - started
    if summary is None:
        raise RuntimeError("generation ended without a summary")
    return {"elapsed": elapsed, "groups": groups, "candidates": candidates,
            "candidate_count": summary.candidate_count, "teacher_calls": summary.usage.requests}


async def pipelined(clients: StageClients, request: generator_pb2.GenerateRequest,
                    config: judge_pb2.JudgeConfig) -> dict:
    marks: dict[str, float] = {}
    judged = {"groups": 0, "candidates": 0}
    total = len(request.prompts.prompts)

    async def on_generate(progress: generator_pb2.GenerateProgress) -> None:
        if progress.prompts_done >= total and "generated" not in marks:
            marks["generated"] = time.perf_counter()

    async def on_generated(group: common_pb2.CandidateGroup, spend: Spend) -> None:
        pass  # what the teacher calls paid: not measured here

    async def on_judged(group: judge_pb2.JudgedGroup) -> None:
        judged["groups"] += 1
        judged["candidates"] += len(group.candidates)
        marks["last_judged"] = time.perf_counter()

    started = time.perf_counter()
    result = await generate_and_judge(clients, request, config, on_generate, on_generated,
                                      on_judged)
    elapsed = time.perf_counter() - started
    stats = result.statistics
    return {
        "elapsed": elapsed,
        "generated_at": marks.get("generated", float("nan")) - started,
        "last_judged_at": marks.get("last_judged", float("nan")) - started,
        "judged_groups": judged["groups"], "judged_candidates": judged["candidates"],
        "candidates_scored": stats.candidates_scored, "judge_errors": stats.judge_errors,
        "judge_calls": stats.usage.requests, "prompts_kept": stats.prompts_kept,
        "preference_pairs": stats.preference_pairs, "curated_bytes": result.curated.size_bytes,
    }


def start_services(args: argparse.Namespace, fake: FakeProviderHandle, store_dir: str,
                   log_dir: Path, services: dict[str, ServiceProcess]) -> None:
    """Starts generator and judge into `services` (filled as they start, for the cleanup)."""
    env = {
        "DISTILL_STORE_URL": f"file://{store_dir}",
        "DISTILL_LOG_LEVEL": "WARNING",
        "DISTILL_GRACE_SECONDS": "2",
        KEY_ENV: KEY,
        **fake.env(KEY_ENV),  # the fake is the endpoint that gets KEY
        "DISTILL_GENERATOR_MAX_CONCURRENCY_LIMIT": str(max(256, args.concurrency)),
        "DISTILL_JUDGE_MAX_CONCURRENT_GROUPS": str(args.judge_groups),
        "DISTILL_JUDGE_MAX_CONCURRENT_CALLS": str(args.judge_calls),
    }
    for name in ("generator", "judge"):
        # port 0: each binds a port the kernel picks; wait_healthy() reads it back
        services[name] = start_service(f"services.{name}", 0, log_dir, env, cwd=REPO)
    for service in services.values():
        service.wait_healthy(60)


async def measure(args: argparse.Namespace, fake: FakeProviderHandle,
                  services: dict[str, ServiceProcess]) -> dict:
    gen, judge = services["generator"], services["judge"]
    clients = StageClients.connect(gen.address, judge.address, "127.0.0.1:9", "127.0.0.1:9",
                                   idle_seconds=120)
    rounds = []
    try:
        # Warm-up: imports, connections, first SDK clients in both services.
        await pipelined(clients, generate_request(fake, args, "warmup", prompts=8),
                        judge_config(fake, "warmup"))
        for r in range(args.rounds):
            row: dict = {}
            for kind in ("alone", "pipelined"):
                job = f"{kind}-{r}"
                request = generate_request(fake, args, job)
                received = fake.stats()["received"]
                cpu = {n: cpu_seconds(s.proc.pid) for n, s in services.items()}
                if kind == "alone":
                    out = await generate_alone(gen.address, request)
                else:
                    out = await pipelined(clients, request, judge_config(fake, job))
                out["provider_calls"] = fake.stats()["received"] - received
                out["cpu_s"] = {n: round(cpu_seconds(s.proc.pid) - cpu[n], 2)
                                for n, s in services.items()}
                row[kind] = out
            row["ratio"] = row["pipelined"]["elapsed"] / row["alone"]["elapsed"]
            rounds.append(row)
            print(f"round {r}: alone {row['alone']['elapsed']:.2f}s, pipelined "
                  f"{row['pipelined']['elapsed']:.2f}s, ratio {row['ratio']:.3f}",
                  file=sys.stderr, flush=True)
    finally:
        await clients.close()
    return {"rounds": rounds}


def summarise(args: argparse.Namespace, rounds: list[dict], load_start: tuple) -> dict:
    def rnd(x: float, n: int = 3) -> float:
        return round(x, n)

    alone = [r["alone"] for r in rounds]
    piped = [r["pipelined"] for r in rounds]
    ratio = statistics.median(r["ratio"] for r in rounds)
    last = rounds[-1]
    ideal_alone = -(-args.prompts // args.concurrency) * args.latency
    return {
        "prompts": args.prompts, "samples": args.samples, "latency_s": args.latency,
        "generator_concurrency": args.concurrency, "judge_max_concurrent_groups":
            args.judge_groups, "judge_max_concurrent_calls": args.judge_calls,
        "rounds": len(rounds), "store_root": args.store_root or tempfile.gettempdir(),
        "load_average_start": [rnd(x, 2) for x in load_start],
        "load_average_end": [rnd(x, 2) for x in os.getloadavg()],
        "ideal_generation_s": rnd(ideal_alone),
        "alone_elapsed_s": [rnd(a["elapsed"]) for a in alone],
        "pipelined_elapsed_s": [rnd(p["elapsed"]) for p in piped],
        "pipelined_generation_done_s": [rnd(p["generated_at"]) for p in piped],
        "pipelined_last_judged_s": [rnd(p["last_judged_at"]) for p in piped],
        "ratios": [rnd(r["ratio"]) for r in rounds],
        "ratio_median": rnd(ratio), "target_ratio": TARGET_RATIO,
        "candidates_alone": last["alone"]["candidates"],
        "candidates_judged": last["pipelined"]["judged_candidates"],
        "candidates_scored": last["pipelined"]["candidates_scored"],
        "judge_errors": last["pipelined"]["judge_errors"],
        "teacher_calls_alone": last["alone"]["teacher_calls"],
        "judge_calls": last["pipelined"]["judge_calls"],
        "provider_calls_alone": last["alone"]["provider_calls"],
        "provider_calls_pipelined": last["pipelined"]["provider_calls"],
        "prompts_kept": last["pipelined"]["prompts_kept"],
        "preference_pairs": last["pipelined"]["preference_pairs"],
        "cpu_s_alone": last["alone"]["cpu_s"], "cpu_s_pipelined": last["pipelined"]["cpu_s"],
        "pass": ratio <= TARGET_RATIO,
    }


def main(args: argparse.Namespace) -> None:
    load_start = os.getloadavg()
    fake_proc, fake = start_fake(args.latency)
    services: dict[str, ServiceProcess] = {}
    try:
        fake.configure(replies=REPLIES, api_key=KEY)
        with tempfile.TemporaryDirectory(prefix="judge-pipeline-", dir=args.store_root) as tmp:
            try:
                start_services(args, fake, f"{tmp}/store", Path(tmp) / "logs", services)
                out = asyncio.run(measure(args, fake, services))
            except BaseException:
                for service in services.values():
                    print(f"--- {service.name} log (tail) ---\n{service.log()[-3000:]}",
                          file=sys.stderr)
                raise
            finally:
                for service in services.values():
                    service.stop()
    finally:
        stop_process(fake_proc, 10)
    emit("judge_pipeline", summarise(args, out["rounds"], load_start))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4,
                        help="generator teacher calls in flight (RateLimits.max_concurrency)")
    parser.add_argument("--judge-groups", type=int, default=32,
                        help="DISTILL_JUDGE_MAX_CONCURRENT_GROUPS")
    parser.add_argument("--judge-calls", type=int, default=64,
                        help="DISTILL_JUDGE_MAX_CONCURRENT_CALLS")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store-root", default=None,
                        help="where the temporary file:// store goes (default: the system temp "
                        "dir; /dev/shm takes the disk's fsyncs out of the measurement)")
    main(parser.parse_args())
