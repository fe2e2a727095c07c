"""Serving by alias through the router, against the inference engines it stands on (issue 21).

    .venv/bin/python -m benchmarks.router                      # the engines alone (no router)
    .venv/bin/python -m benchmarks.router --router-url http://127.0.0.1:52056 \\
        --router-key KEY --student-alias A --teacher-alias T --fake-url http://127.0.0.1:P/v1 \\
        --gateway 127.0.0.1:50051 --swap-job jobs/X --swap-job jobs/Y   # all four parts

The same GGUF (default: the offline SmolLM2-135M Q4_1), the same `--prompts` prompts (200), at
`--concurrency` (4), through the official `openai` SDK for every server, greedy, `--max-tokens`
each:
(a) requests/s through the router's HTTP endpoint over requests/s of llama.cpp's `llama-server`
    called directly (`--parallel` = concurrency, continuous batching): target >= 0.95;
(b) the router over llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`, one
    request at a time): the speed-up continuous batching buys, reported;
(c) a teacher alias: p50 latency the router adds over calling the fake provider directly
    (`tests/fixtures/fake_provider.py`, no latency of its own), one request at a time: <= 3 ms;
(d) SetAlias moving the student alias between `--swap-job` targets while (a)'s load runs through
    the router: failed requests, target 0.
Without `--router-url` it measures what needs no router: (a)'s denominator, (b)'s baseline and
(c)'s direct p50, so those can be recorded before the router exists. Each server runs alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.generator_fanout import start_fake
from benchmarks.result import emit
from distill.local_suite import stop_process
from services.common.llama_server import start_llama_server
from services.common.models import packaged_smollm2_gguf

# uvicorn logs the address it bound (the port the kernel picked with --port 0).
_UVICORN_LISTENING = re.compile(r"Uvicorn running on (http://\S+)")


def prompts(count: int) -> list[str]:
    """Short review-sentiment questions, distinct so no server can answer from a cache."""
    moods = ["loved it", "hated it", "it was fine", "would not buy again", "best purchase ever"]
    return [f"Review {i}: {moods[i % len(moods)]}, {i % 7 + 1} stars. Positive or negative?"
            for i in range(count)]


@dataclass
class Load:
    """What one run of the prompts at a concurrency gave."""

    elapsed: float
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed

    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000


async def run_load(base_url: str, model: str, texts: list[str], concurrency: int,
                   max_tokens: int, api_key: str = "unused") -> Load:
    """Every prompt once, `concurrency` at a time, through the openai SDK (no retries: a failed
    request counts as failed)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)
    gate = asyncio.Semaphore(concurrency)
    load = Load(elapsed=0.0)

    async def one(text: str) -> None:
        async with gate:
            started = time.perf_counter()
            try:
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": text}],
                    max_tokens=max_tokens, temperature=0, seed=1)
            except Exception as exc:  # noqa: BLE001 - every failure is a figure here
                load.failures.append(f"{type(exc).__name__}: {exc}")
                return
            load.latencies.append(time.perf_counter() - started)

    try:
        await asyncio.gather(*(one(t) for t in texts[:concurrency]))  # connections, warm-up
        load.latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(t) for t in texts))
        load.elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return load


def load_figures(name: str, load: Load) -> dict:
    return {f"{name}_rps": round(load.rps, 3), f"{name}_elapsed_s": round(load.elapsed, 2),
            f"{name}_p50_ms": round(load.p50_ms(), 1), f"{name}_failed": len(load.failures)}


# -- the engines alone ------------------------------------------------------------------------

def llama_server_direct(gguf: Path, texts: list[str], args: argparse.Namespace,
                        log_dir: Path) -> Load:
    """(a)'s denominator: llama-server with one slot per concurrent request."""
    server = start_llama_server(gguf, log_dir / "llama-server.log", args=[
        "--parallel", str(args.concurrency), "--ctx-size", str(args.ctx * args.concurrency),
        "--threads", str(args.threads), *(["--poll", str(args.poll)] if args.poll is not None
                                          else [])])
    try:
        url = server.wait_ready()
        return asyncio.run(run_load(f"{url}/v1", "student", texts, args.concurrency,
                                    args.max_tokens))
    finally:
        stop_process(server.proc)


def llama_cpp_python_server(gguf: Path, texts: list[str], args: argparse.Namespace,
                            log_dir: Path) -> Load:
    """(b)'s baseline: llama-cpp-python's OpenAI server, which answers one request at a time."""
    log_path = log_dir / "llama_cpp.server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host",
             "127.0.0.1", "--port", "0", "--n_ctx", str(args.ctx), "--n_threads",
             str(args.threads)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (found := _UVICORN_LISTENING.search(log_path.read_text(errors="replace"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        return asyncio.run(run_load(f"{found.group(1)}/v1", "student", texts, args.concurrency,
                                    args.max_tokens))
    finally:
        stop_process(proc)


def teacher_direct(texts: list[str], fake_url: str | None) -> Load:
    """(c)'s baseline: the fake provider called directly, one request at a time: the one at
    `fake_url` (the router's teacher alias points at it), else one started here."""
    proc, base_url = None, fake_url
    if base_url is None:
        proc, fake = start_fake(0.0)
        base_url = fake.openai_base_url
    try:
        return asyncio.run(run_load(base_url, "gpt-4o-mini", texts, 1, 16, api_key="sk-bench"))
    finally:
        if proc is not None:
            stop_process(proc)


# -- through the router (issue 21): these need a running router, its URL and a project key ----

def router_student(args: argparse.Namespace, texts: list[str]) -> Load:
    """(a)'s numerator: the same prompts through the router's OpenAI endpoint by alias."""
    return asyncio.run(run_load(f"{args.router_url}/v1", args.student_alias, texts,
                                args.concurrency, args.max_tokens, api_key=args.router_key))


def router_teacher(args: argparse.Namespace, texts: list[str]) -> Load:
    """(c)'s numerator: a teacher alias through the router, one request at a time; the alias
    points at the fake provider `--fake-url` names (`python -m tests.fixtures.fake_provider`,
    no latency of its own)."""
    return asyncio.run(run_load(f"{args.router_url}/v1", args.teacher_alias, texts, 1, 16,
                                api_key=args.router_key))


def swap_during_load(args: argparse.Namespace, texts: list[str]) -> tuple[Load, int]:
    """(d): (a)'s load through the router while SetAlias moves the student alias from one
    `--swap-job` to the next every `--swap-every` seconds; returns the load and the swaps."""
    from distill.client import Distiller

    done = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        with Distiller(args.gateway) as client:
            while not done.wait(args.swap_every):
                current = client.get_alias(args.student_alias)
                job = args.swap_job[(swaps + 1) % len(args.swap_job)]
                client.set_alias(args.student_alias, job=job, expected_version=current.version)
                swaps += 1

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        load = router_student(args, texts)
    finally:
        done.set()
        thread.join(60)
    return load, swaps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", type=Path, help="default: the offline SmolLM2-135M GGUF")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--ctx", type=int, default=512, help="context tokens per request slot")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--poll", type=int, help="llama-server's --poll (0: its threads sleep "
                        "instead of spinning while they wait for work)")
    parser.add_argument("--router-url", help="the router's HTTP base, e.g. http://127.0.0.1:52056")
    parser.add_argument("--router-key", default="unused", help="a project API key")
    parser.add_argument("--student-alias", help="an alias on a job whose GGUF is --gguf")
    parser.add_argument("--teacher-alias", help="an alias on the teacher at --fake-url")
    parser.add_argument("--fake-url", help="a fake provider's OpenAI base URL (.../v1); default: "
                        "one started here")
    parser.add_argument("--gateway", default="127.0.0.1:50051", help="for (d)'s SetAlias")
    parser.add_argument("--swap-job", action="append", default=[],
                        help="(d): jobs/ID the alias moves between (give two or more)")
    parser.add_argument("--swap-every", type=float, default=2.0, help="(d): seconds per swap")
    args = parser.parse_args(argv)

    gguf = args.gguf or packaged_smollm2_gguf()
    texts = prompts(args.prompts)
    figures: dict = {"prompts": args.prompts, "concurrency": args.concurrency,
                     "max_tokens": args.max_tokens, "threads": args.threads, "gguf": gguf.name,
                     "llama_server_poll": args.poll,
                     "load_average_1m_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        direct = llama_server_direct(gguf, texts, args, Path(tmp))
        figures |= load_figures("llama_server", direct)
        serial = llama_cpp_python_server(gguf, texts, args, Path(tmp))
        figures |= load_figures("llama_cpp_server", serial)
    figures["batching_speedup_engines"] = round(direct.rps / serial.rps, 2)
    teacher = teacher_direct(texts, args.fake_url)
    figures["fake_provider_direct_p50_ms"] = round(teacher.p50_ms(), 2)

    if args.router_url:
        if args.student_alias:
            routed = router_student(args, texts)
            figures |= load_figures("router", routed)
            figures["a_ratio"] = round(routed.rps / direct.rps, 3)
            figures["b_speedup"] = round(routed.rps / serial.rps, 2)
        if args.teacher_alias:
            via = router_teacher(args, texts)
            figures["c_added_p50_ms"] = round(via.p50_ms() - teacher.p50_ms(), 2)
        if len(args.swap_job) >= 2:
            swapped, swaps = swap_during_load(args, texts)
            figures |= {"d_failed": len(swapped.failures), "d_swaps": swaps,
                        "d_rps": round(swapped.rps, 3)}
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    emit("router", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
