"""Students that share a base: one engine each, or LoRA adapters on one base engine (issue 21).

    .venv/bin/python -m benchmarks.lora_students               # N = 2 and 3, 40 requests each

For each N: N students as N llama-server processes (one GGUF each, as the router runs them
today), then the same N students as one llama-server holding the base GGUF and N LoRA GGUFs
(`--lora` per adapter, chosen per request by llama-server's `"lora": [{"id", "scale"}]` field,
the way vLLM-style upstreams serve adapters). Each server runs with the router's default engine
settings (`engine_n_ctx` per slot x `engine_parallel` slots). Figures, per arrangement:
- resident memory of all its processes once every student has answered (its weights paged in):
  RSS, and PSS (shared pages split between the processes that map them);
- `--requests` requests spread round-robin over the N students at `--concurrency`: requests/s
  (and, on the LoRA server, the same requests all on one adapter). Each server gets `--threads`
  (the N processes together get N times the one server's threads).

The base is the offline SmolLM2-135M Q4_1 GGUF. The N one-engine students are N copies of that
file (distinct files, so nothing is shared through the page cache, as with N real students: a
merged student quantised the same way is the same size). The LoRA GGUFs are what the exporter's
`lora_gguf` output is: a PEFT adapter on the dequantised SmolLM2 (`prepare_smollm2`; random,
seeded, rank `--rank` on every projection, tests/exporter's `make_adapter`) through llama.cpp's
`convert_lora_to_gguf.py` (services/exporter/gguf.py), f16.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

from benchmarks.result import emit
from distill.local_suite import stop_process
from services.common.llama_server import start_llama_server
from services.common.models import packaged_smollm2_gguf, prepare_smollm2

MiB = 2**20


def lora_ggufs(count: int, rank: int, work: Path) -> list[Path]:
    """`count` LoRA GGUFs on SmolLM2-135M, as the exporter's lora_gguf output makes them."""
    from services.exporter.gguf import Converter, convert_lora
    from services.exporter.settings import default_converter_dir
    from tests.exporter.helpers import make_adapter
    from tests.fixtures.tiny_llama import shared_cache_dir

    base = prepare_smollm2(shared_cache_dir())
    converter = Converter.locate(default_converter_dir())
    out = []
    for i in range(count):
        adapter = make_adapter(base, work / f"adapter-{i}", seed=i, r=rank, scale=0.02)
        out.append(asyncio.run(convert_lora(converter, adapter, base, work / f"lora-{i}.gguf",
                                            timeout=1800)))
    return out


def engine_flags(threads: int) -> list[str]:
    """The router's default engine settings (services/router/settings.py)."""
    from services.router.settings import RouterSettings

    s = RouterSettings()
    return ["--ctx-size", str(s.engine_n_ctx * s.engine_parallel),
            "--parallel", str(s.engine_parallel), "--threads", str(threads)]


@contextmanager
def servers(specs: list[tuple[Path, list[str]]], log_dir: Path) -> Iterator[list[tuple]]:
    """llama-server per (GGUF, extra flags); yields [(process, base URL)], stops them all."""
    with ExitStack() as stack:
        started = []
        for i, (gguf, extra) in enumerate(specs):
            server = start_llama_server(gguf, log_dir / f"server-{time.monotonic_ns()}-{i}.log",
                                        args=extra)
            stack.callback(stop_process, server.proc)
            started.append(server)
        yield [(s.proc, f"{s.wait_ready()}/v1") for s in started]


def memory(procs: list) -> dict:
    """RSS and PSS of the processes together, MiB."""
    infos = [psutil.Process(p.pid).memory_full_info() for p in procs]
    return {"rss_mib": round(sum(i.rss for i in infos) / MiB, 1),
            "pss_mib": round(sum(i.pss for i in infos) / MiB, 1)}


def text(i: int) -> str:
    return f"Review {i}: it was fine, {i % 5 + 1} stars. Positive or negative?"


async def spread_load(routes: list[tuple[str, dict]], requests: int, concurrency: int,
                      max_tokens: int) -> tuple[float, int]:
    """`requests` requests, request i to student i mod N; (requests/s, failures)."""
    from openai import AsyncOpenAI

    clients = {url: AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
               for url, _ in routes}
    gate = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        url, extra = routes[i % len(routes)]
        async with gate:
            try:
                await clients[url].chat.completions.create(
                    model="student", messages=[{"role": "user", "content": text(i)}],
                    max_tokens=max_tokens, temperature=0, seed=1, extra_body=extra)
            except Exception:  # noqa: BLE001 - counted
                failures += 1

    try:
        await asyncio.gather(*(one(i) for i in range(len(routes))))  # each student answers once
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        elapsed = time.perf_counter() - started
    finally:
        for client in clients.values():
            await client.close()
    return (requests - failures) / elapsed, failures


def measure(count: int, base: Path, loras: list[Path], args: argparse.Namespace,
            work: Path) -> dict:
    flags = engine_flags(args.threads)
    copies = []
    for i in range(count):
        copies.append(work / f"student-{i}.gguf")
        shutil.copyfile(base, copies[-1])
    figures: dict = {}
    with servers([(c, flags) for c in copies], work) as running:
        rps, failed = asyncio.run(spread_load([(url, {}) for _, url in running], args.requests,
                                              args.concurrency, args.max_tokens))
        mem = memory([p for p, _ in running])
        figures |= {f"n{count}_processes_{k}": v for k, v in mem.items()}
        figures |= {f"n{count}_processes_rps": round(rps, 3),
                    f"n{count}_processes_failed": failed}
    lora_flags = [*flags, *(f for path in loras[:count] for f in ("--lora", str(path)))]
    with servers([(base, lora_flags)], work) as running:
        (proc, url), = running
        routes = [(url, {"lora": [{"id": j, "scale": 1.0 if j == i else 0.0}
                                  for j in range(count)]}) for i in range(count)]
        rps, failed = asyncio.run(spread_load(routes, args.requests, args.concurrency,
                                              args.max_tokens))
        mem = memory([proc])
        figures |= {f"n{count}_lora_{k}": v for k, v in mem.items()}
        figures |= {f"n{count}_lora_rps": round(rps, 3), f"n{count}_lora_failed": failed}
        # The same load on one adapter only: llama-server batches only requests whose adapters
        # match, so this separates that from the adapters' own compute.
        rps, failed = asyncio.run(spread_load(routes[:1], args.requests, args.concurrency,
                                              args.max_tokens))
        figures |= {f"n{count}_lora_one_adapter_rps": round(rps, 3),
                    f"n{count}_lora_one_adapter_failed": failed}
    for path in copies:
        path.unlink()
    figures[f"n{count}_rss_ratio"] = round(
        figures[f"n{count}_lora_rss_mib"] / figures[f"n{count}_processes_rss_mib"], 3)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank of each adapter")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="each engine's threads")
    args = parser.parse_args(argv)

    base = packaged_smollm2_gguf()
    figures: dict = {"base": base.name, "base_mib": round(base.stat().st_size / MiB, 1),
                     "rank": args.rank, "requests": args.requests,
                     "concurrency": args.concurrency, "max_tokens": args.max_tokens,
                     "threads": args.threads, "engine_flags": " ".join(engine_flags(1)[:4]),
                     "load_average_1m_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        work = Path(tmp)
        loras = lora_ggufs(max(args.students), args.rank, work)
        figures["lora_gguf_mib"] = round(statistics.mean(p.stat().st_size for p in loras) / MiB,
                                         2)
        for count in args.students:
            figures |= measure(count, base, loras, args, work)
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    emit("lora_students", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
