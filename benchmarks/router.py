"""Serving by alias through the router, against the inference engines it stands on (issues 21, 22).

    .venv/bin/python -m benchmarks.router --prompts 40 --max-tokens 16   # starts all it needs
    .venv/bin/python -m benchmarks.router --router-url http://127.0.0.1:52056 \\
        --router-key KEY --student-alias A --teacher-alias T --fake-url http://127.0.0.1:P/v1 \\
        --gateway 127.0.0.1:50051 --swap-job jobs/X --swap-job jobs/Y \\
        [--capture-off-url http://127.0.0.1:52057]              # a router already running

By default it starts, on loopback, what the router needs: an S3 server (`weed mini`), the
gateway, the router (`python -m services.router`), the fake provider in its own process, a
student alias on the offline SmolLM2 GGUF (a SUCCEEDED job row, no training), a second job on a
copy of that GGUF with other metadata (so (d) swaps between two engines) and a teacher alias on
the fake provider (tests/fixtures/router_stack.py, as the router's tests do).

The same GGUF (default: the offline SmolLM2-135M Q4_1), the same `--prompts` prompts (200), at
`--concurrency` (4), through the official `openai` SDK for every server, greedy, `--max-tokens`
each; the router's engine gets the direct server's threads, slots and context:
(a) requests/s through the router's HTTP endpoint over requests/s of llama.cpp's `llama-server`
    called directly (`--parallel` = concurrency, continuous batching), the two alternated over
    `--rounds`, medians: target >= 0.95;
(b) the router over llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`, one
    request at a time): the speed-up continuous batching buys, reported;
(c) a teacher alias: p50 latency the router adds over calling the fake provider directly
    (`tests/fixtures/fake_provider.py`, no latency of its own), one request at a time,
    `--teacher-requests` each, alternated over the rounds: <= 3 ms, with the router's CPU per
    request (`benchmarks/router_cpu.py` measures that alone); beside it, the same fake server
    behind an upstream alias (forwarded over HTTP, no provider client);
(d) SetAlias moving the student alias between two jobs (`--swap-job`) every `--swap-every`
    seconds while (a)'s load runs through the router: failed requests, target 0;
(e) issue 22: the same loads through a router with trace capture on and one with it off
    (`DISTILL_ROUTER_TRACE_CAPTURE=false`), alternated: requests/s on / off, target >= 0.97, on
    the student load and on a teacher load (`--capture-teacher-requests` at the concurrency,
    where the router's own work is a larger share), with the router's CPU per request; and,
    on the capture-on router, the same loads with each request opting out of its trace
    (`x-distill-trace: off`): the same router and engine, so only capture differs; and the
    S3 server's CPU per request in each arm (the capture-on arm's window closes when its traces
    are written), since it shares the cores here.
`--no-router` measures the engines alone: (a)'s denominator, (b)'s baseline, (c)'s direct p50.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.cpu import cpu_seconds, process_with_argument
from benchmarks.generator_fanout import start_fake
from benchmarks.result import emit
from distill.local_suite import stop_process
from services.common.llama_server import start_llama_server
from services.common.models import packaged_smollm2_gguf

# uvicorn logs the address it bound (the port the kernel picked with --port 0).
_UVICORN_LISTENING = re.compile(r"Uvicorn running on (http://\S+)")
SWAP_JOBS = ("jobs/student1", "jobs/student2")


def prompts(count: int, prefix: str = "Review") -> list[str]:
    """Short review-sentiment questions, distinct so no server can answer from a cache."""
    moods = ["loved it", "hated it", "it was fine", "would not buy again", "best purchase ever"]
    return [f"{prefix} {i}: {moods[i % len(moods)]}, {i % 7 + 1} stars. Positive or negative?"
            for i in range(count)]


@dataclass
class Load:
    """What one run of the prompts at a concurrency gave."""

    elapsed: float
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    versions: set[int] = field(default_factory=set)  # alias versions that answered (router)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed

    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000


async def run_load(base_url: str, model: str, texts: list[str], concurrency: int,
                   max_tokens: int, api_key: str = "unused",
                   headers: dict[str, str] | None = None) -> Load:
    """Every prompt once, `concurrency` at a time, through the openai SDK (no retries: a failed
    request counts as failed)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600,
                         default_headers=headers)
    gate = asyncio.Semaphore(concurrency)
    load = Load(elapsed=0.0)

    async def one(text: str) -> None:
        async with gate:
            started = time.perf_counter()
            try:
                reply = await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": text}],
                    max_tokens=max_tokens, temperature=0, seed=1)
            except Exception as exc:  # noqa: BLE001 - every failure is a figure here
                load.failures.append(f"{type(exc).__name__}: {exc}")
                return
            load.latencies.append(time.perf_counter() - started)
            served = (reply.model_extra or {}).get("distill") or {}
            if "version" in served:
                load.versions.add(served["version"])

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


def rounds_figures(name: str, loads: list[Load]) -> dict:
    """The median round's figures, with every round's requests/s and all failures."""
    ranked = sorted(loads, key=lambda load: load.rps)
    figures = load_figures(name, ranked[len(ranked) // 2])
    figures[f"{name}_rps_rounds"] = [round(load.rps, 3) for load in loads]
    figures[f"{name}_failed"] = sum(len(load.failures) for load in loads)
    return figures


def median_rps(loads: list[Load]) -> float:
    return statistics.median(load.rps for load in loads)


# -- the engines alone ------------------------------------------------------------------------

def engine_flags(args: argparse.Namespace) -> list[str]:
    """The direct llama-server's flags: one slot per concurrent request, --ctx per slot."""
    return ["--parallel", str(args.concurrency), "--ctx-size", str(args.ctx * args.concurrency),
            "--threads", str(args.threads),
            *(["--poll", str(args.poll)] if args.poll is not None else [])]


@contextlib.contextmanager
def llama_server_direct(gguf: Path, args: argparse.Namespace, log_dir: Path
                        ) -> Iterator[tuple[str, int]]:
    """(a)'s denominator: llama-server for `gguf`; yields its OpenAI base URL and pid."""
    server = start_llama_server(gguf, log_dir / "llama-server.log", args=engine_flags(args))
    try:
        yield f"{server.wait_ready()}/v1", server.proc.pid
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


# -- through the router -----------------------------------------------------------------------

@dataclass
class Routers:
    """Where the router parts send their requests (started here, or named by flags)."""

    url: str  # the router's OpenAI base, .../v1
    key: str
    student_alias: str | None
    teacher_alias: str | None
    fake_url: str | None  # the fake provider's OpenAI base the teacher alias points at
    gateway: str
    gateway_token: str | None
    swap_jobs: list[str]
    capture_off_url: str | None = None  # a router with trace capture off, same gateway
    upstream_alias: str | None = None  # an Upstream alias on the fake provider's URL
    router_pid: int | None = None  # for CPU per request (started here)
    capture_off_pid: int | None = None
    trace_counts: Callable[[], dict] | None = None  # the capture-on router's trace counters
    s3_pid: int | None = None  # the S3 server the capture-on router writes its traces to


def student_load(routers: Routers, url: str, texts: list[str], args: argparse.Namespace
                 ) -> Load:
    return asyncio.run(run_load(url, routers.student_alias, texts, args.concurrency,
                                args.max_tokens, api_key=routers.key))


def one_at_a_time(url: str, model: str, texts: list[str], key: str,
                  headers: dict[str, str] | None = None) -> Load:
    return asyncio.run(run_load(url, model, texts, 1, 16, api_key=key, headers=headers))


def swap_during_load(routers: Routers, texts: list[str], args: argparse.Namespace
                     ) -> tuple[Load, int]:
    """(d): (a)'s load through the router while SetAlias moves the student alias from one swap
    job to the next every `--swap-every` seconds; returns the load and the swaps made."""
    from distill.client import Distiller

    done = threading.Event()
    swaps = 0
    errors: list[str] = []

    def swapper() -> None:
        nonlocal swaps
        try:
            with Distiller(routers.gateway, token=routers.gateway_token) as client:
                while not done.wait(args.swap_every):
                    current = client.get_alias(routers.student_alias)
                    job = routers.swap_jobs[(swaps + 1) % len(routers.swap_jobs)]
                    client.set_alias(routers.student_alias, job=job,
                                     expected_version=current.version)
                    swaps += 1
        except Exception as exc:  # noqa: BLE001 - reported with the figures
            errors.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        load = student_load(routers, routers.url, texts, args)
    finally:
        done.set()
        thread.join(60)
    if errors:
        raise RuntimeError(f"(d): SetAlias failed: {errors[0]}")
    return load, swaps


def cpu_per_request_ms(pids: list[int], run: Callable[[], Load]) -> tuple[Load, float | None]:
    """`run()`'s load and the CPU the processes `pids` spent per request meanwhile."""
    before = sum(cpu_seconds(pid) for pid in pids)
    load = run()
    if not pids:
        return load, None
    return load, per_request_ms(sum(cpu_seconds(pid) for pid in pids) - before, load)


def pid(known: int | None) -> list[int]:
    return [] if known is None else [known]


def engine_pids(router_pid: int | None) -> list[int]:
    """The llama-server processes a router started (none known for a router not started here)."""
    if router_pid is None:
        return []
    import psutil

    return [p.pid for p in psutil.Process(router_pid).children()
            if p.name() == "llama-server"]


def capture_on_off(routers: Routers, texts: list[str], teacher_texts: list[str],
                   args: argparse.Namespace) -> dict:
    """(e): the same loads through the capture-on and the capture-off router, alternated."""
    figures: dict = {}
    s3_cpu = (lambda: cpu_seconds(routers.s3_pid)) if routers.s3_pid else (lambda: 0.0)
    loads = {"student": (routers.student_alias, texts, args.max_tokens)}
    if routers.teacher_alias:
        loads["teacher"] = (routers.teacher_alias, teacher_texts, 16)
    for name, (model, prompts_, max_tokens) in loads.items():
        def run(url: str, few: bool = False, headers: dict | None = None, model=model,
                prompts_=prompts_, max_tokens=max_tokens) -> Load:
            return asyncio.run(run_load(url, model, prompts_[:args.concurrency] if few
                                        else prompts_, args.concurrency, max_tokens,
                                        api_key=routers.key, headers=headers))

        for url in (routers.url, routers.capture_off_url):  # engines, clients, first imports
            run(url, few=True)
        on: list[Load] = []
        off: list[Load] = []
        opted_out: list[Load] = []
        cpu: dict[str, list[float]] = {"on": [], "off": [], "opted_out": []}
        s3: dict[str, list[float]] = {"on": [], "off": [], "opted_out": []}

        def arm(which: str, router_pid: int | None, go: Callable[[], Load],
                traced: int | None = None, cpu=cpu, s3=s3) -> Load:
            """One arm's load, with the router's and the S3 server's CPU per request. With
            `traced` (traces out before it), the S3 window closes when the arm's traces are
            written (in batches), so that their writes count here and not in the next arm."""
            s3_before = s3_cpu()
            load, used = cpu_per_request_ms(pid(router_pid), go)
            if traced is not None:
                wait_for_traces(routers, traced + len(load.latencies))
            cpu[which].append(used or 0.0)
            s3[which].append(per_request_ms(s3_cpu() - s3_before, load))
            return load

        for _ in range(args.rounds):
            on.append(arm("on", routers.router_pid, lambda: run(routers.url),
                          traced=traces_out(routers)))
            off.append(arm("off", routers.capture_off_pid,
                           lambda: run(routers.capture_off_url)))
            # The capture-on router and its engine, each request opting out of its trace:
            # capture's cost without a second router and engine in the comparison.
            opted_out.append(arm("opted_out", routers.router_pid, lambda: run(
                routers.url, headers={"x-distill-trace": "off"})))
        figures |= rounds_figures(f"e_{name}_capture_on", on)
        figures |= rounds_figures(f"e_{name}_capture_off", off)
        figures |= rounds_figures(f"e_{name}_opted_out", opted_out)
        figures[f"e_{name}_ratio"] = round(median_rps(on) / median_rps(off), 3)
        figures[f"e_{name}_ratio_same_router"] = round(median_rps(on) / median_rps(opted_out),
                                                       3)
        if routers.router_pid:
            figures |= {f"e_{name}_router_cpu_ms_{arm}": round(statistics.median(values), 2)
                        for arm, values in cpu.items()}
        if routers.s3_pid:
            figures |= {f"e_{name}_s3_cpu_ms_{arm}": round(statistics.median(values), 2)
                        for arm, values in s3.items()}
    if routers.trace_counts is not None:  # what capture kept up with
        figures["e_traces"] = routers.trace_counts()
    return figures


def traces_out(routers: Routers) -> int:
    """Traces the capture-on router has written or dropped so far (0 when not known)."""
    return sum(routers.trace_counts().values()) if routers.trace_counts else 0


def wait_for_traces(routers: Routers, count: int) -> None:
    """Until `count` traces are out (they are written in batches, every trace_flush_seconds),
    or 120 s; the final counts show any shortfall."""
    deadline = time.monotonic() + 120
    while routers.trace_counts and traces_out(routers) < count and time.monotonic() < deadline:
        time.sleep(0.2)


def per_request_ms(seconds: float, load: Load) -> float:
    return seconds * 1000 / max(1, len(load.latencies))


def measure(gguf: Path, routers: Routers | None, args: argparse.Namespace, log_dir: Path
            ) -> dict:
    """Every part; the router parts only with `routers`."""
    texts = prompts(args.prompts)
    teacher_texts = prompts(args.teacher_requests, "Teacher review")
    figures: dict = {}
    direct: list[Load] = []
    routed: list[Load] = []
    cpu: dict[str, list[float]] = {"direct_engine": [], "router": [], "router_engine": []}
    with llama_server_direct(gguf, args, log_dir) as (direct_url, direct_pid):
        if routers and routers.student_alias:  # the router's engine up before the clock runs
            student_load(routers, routers.url, texts[:args.concurrency], args)
        for _ in range(args.rounds):
            load, used = cpu_per_request_ms([direct_pid], lambda: asyncio.run(run_load(
                direct_url, "student", texts, args.concurrency, args.max_tokens)))
            direct.append(load)
            cpu["direct_engine"].append(used)
            if routers and routers.student_alias:
                router_before = cpu_seconds(routers.router_pid) if routers.router_pid else 0.0
                load, used = cpu_per_request_ms(engine_pids(routers.router_pid),
                                                lambda: student_load(routers, routers.url,
                                                                     texts, args))
                routed.append(load)
                cpu["router_engine"].append(used)
                if routers.router_pid:
                    cpu["router"].append((cpu_seconds(routers.router_pid) - router_before)
                                         * 1000 / max(1, len(load.latencies)))
    figures |= rounds_figures("llama_server", direct)
    # Where each answer's CPU went (ms per request, medians): the engines' and the router's.
    figures |= {f"a_cpu_ms_{name}": round(statistics.median(values), 1)
                for name, values in cpu.items() if values and None not in values}
    serial = llama_cpp_python_server(gguf, texts, args, log_dir)
    figures |= load_figures("llama_cpp_server", serial)
    figures["batching_speedup_engines"] = round(median_rps(direct) / serial.rps, 2)
    if routed:
        figures |= rounds_figures("router", routed)
        figures["a_ratio"] = round(median_rps(routed) / median_rps(direct), 3)
        figures["b_speedup"] = round(median_rps(routed) / serial.rps, 2)

    fake_url = routers.fake_url if routers else None
    fake_proc = None
    if fake_url is None:
        fake_proc, fake = start_fake(0.0)
        fake_url = fake.openai_base_url
    try:
        teacher_direct: list[Load] = []
        teacher_routed: list[Load] = []
        teacher_cpu: list[float] = []  # the router's CPU ms per teacher request (started here)
        upstream_routed: list[Load] = []
        for _ in range(args.rounds):
            teacher_direct.append(one_at_a_time(fake_url, "gpt-4o-mini", teacher_texts,
                                                "sk-bench"))
            if routers and routers.teacher_alias:
                load, used = cpu_per_request_ms(pid(routers.router_pid), lambda: one_at_a_time(
                    routers.url, routers.teacher_alias, teacher_texts, routers.key))
                teacher_routed.append(load)
                if used is not None:
                    teacher_cpu.append(used)
            if routers and routers.upstream_alias:
                upstream_routed.append(one_at_a_time(routers.url, routers.upstream_alias,
                                                     teacher_texts, routers.key))
    finally:
        if fake_proc is not None:
            stop_process(fake_proc)
    direct_p50 = statistics.median(load.p50_ms() for load in teacher_direct)
    figures["fake_provider_direct_p50_ms"] = round(direct_p50, 2)
    if teacher_routed:
        routed_p50 = statistics.median(load.p50_ms() for load in teacher_routed)
        figures["router_teacher_p50_ms"] = round(routed_p50, 2)
        figures["c_added_p50_ms"] = round(routed_p50 - direct_p50, 2)
        figures["c_failed"] = sum(len(load.failures) for load in teacher_routed)
        if teacher_cpu:  # load moves it far less than the p50 (benchmarks/router_cpu.py)
            figures["c_router_cpu_ms_per_request"] = round(statistics.median(teacher_cpu), 2)
    if upstream_routed:  # the same server as an upstream: forwarded, no provider client
        routed_p50 = statistics.median(load.p50_ms() for load in upstream_routed)
        figures["c_upstream_added_p50_ms"] = round(routed_p50 - direct_p50, 2)

    if routers and routers.capture_off_url and routers.student_alias:
        capture_texts = prompts(args.capture_teacher_requests, "Capture review")
        figures |= capture_on_off(routers, texts, capture_texts, args)
    if routers and routers.student_alias and len(routers.swap_jobs) >= 2:
        swapped, swaps = swap_during_load(routers, texts, args)
        figures |= {"d_failed": len(swapped.failures), "d_swaps": swaps,
                    "d_rps": round(swapped.rps, 3), "d_versions_served": len(swapped.versions)}
        if swapped.failures:
            figures["d_first_failure"] = swapped.failures[0][:300]
    return figures


# -- the stack, started here ------------------------------------------------------------------

def relabelled_gguf(gguf: Path, dest: Path) -> Path:
    """`gguf`'s tensors under other metadata (llama.cpp's gguf_new_metadata, from the
    exporter's converter folder): a second student file, so a swap moves between two engines."""
    from services.exporter.gguf import Converter, run_tool
    from services.exporter.settings import default_converter_dir

    converter = Converter.locate(default_converter_dir())
    asyncio.run(run_tool([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(gguf),
                          str(dest), "--general-name", "student two", "--force"],
                         what="gguf_new_metadata", timeout=600, env=converter.env()))
    return dest


def trace_counts(metrics_text: Callable[[], str]) -> dict:
    """The router's distill_router_traces counters by outcome."""
    found = re.findall(r'^distill_router_traces_total\{outcome="(\w+)"\} (\S+)$',
                       metrics_text(), re.MULTILINE)
    return {outcome: int(float(count)) for outcome, count in found}


@contextlib.contextmanager
def started_routers(gguf: Path, args: argparse.Namespace, home: Path) -> Iterator[Routers]:
    """S3, the gateway, a router with trace capture on and one with it off, the fake provider;
    a student alias on `gguf` (and a second job on a relabelled copy), a teacher alias."""
    import httpx

    from distill.v1 import gateway_pb2
    from tests.fixtures.router_stack import TEACHER_KEY_ENV, http_url, run_router_stack
    from tests.fixtures.s3_server import run_weed_mini

    engine = {  # the router's engines get what the direct llama-server gets
        "DISTILL_ROUTER_ENGINE_THREADS": str(args.threads),
        "DISTILL_ROUTER_ENGINE_PARALLEL": str(args.concurrency),
        "DISTILL_ROUTER_ENGINE_N_CTX": str(args.ctx),
        "DISTILL_GRACE_SECONDS": "5",
    }
    students = {SWAP_JOBS[0]: gguf, SWAP_JOBS[1]: relabelled_gguf(gguf, home / "student2.gguf")}
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(run_weed_mini(home / "weed"))
        fake_proc, fake = start_fake(0.0)
        stack.callback(stop_process, fake_proc)
        routers = stack.enter_context(run_router_stack(
            home, s3, fake, "sk-bench", students=students, router_env=engine))
        routers.gateway.set_alias("bench-student", job=SWAP_JOBS[0])
        routers.set_teacher_alias("bench-teacher")
        routers.gateway.set_alias("bench-upstream", target=gateway_pb2.AliasTarget(
            upstream=gateway_pb2.Upstream(base_url=fake.openai_base_url, model="gpt-4o-mini",
                                          api_key_env=TEACHER_KEY_ENV)))
        off = routers.another_router(DISTILL_ROUTER_TRACE_CAPTURE="false")
        stack.callback(off.stop)
        metrics_port = routers.router.serving_event()["metrics_port"]
        yield Routers(
            url=routers.http_url, key=routers.token, student_alias="bench-student",
            teacher_alias="bench-teacher", fake_url=fake.openai_base_url,
            gateway=routers.gateway_address, gateway_token=routers.token,
            swap_jobs=list(SWAP_JOBS), capture_off_url=http_url(off),
            upstream_alias="bench-upstream",
            router_pid=routers.router.proc.pid, capture_off_pid=off.proc.pid,
            s3_pid=process_with_argument(str(home / "weed")),
            trace_counts=lambda: trace_counts(lambda: httpx.get(
                f"http://127.0.0.1:{metrics_port}/metrics", timeout=30, trust_env=False).text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", type=Path, help="default: the offline SmolLM2-135M GGUF")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--ctx", type=int, default=512, help="context tokens per request slot")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="engine threads (the direct servers' and the router's engines')")
    parser.add_argument("--poll", type=int, help="the direct llama-server's --poll (0: its "
                        "threads sleep instead of spinning while they wait for work)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="direct and routed loads alternate this many times; medians")
    parser.add_argument("--teacher-requests", type=int, default=200,
                        help="(c): requests one at a time, each way, per round")
    parser.add_argument("--capture-teacher-requests", type=int, default=1000,
                        help="(e): teacher-alias requests at the concurrency, per router, round")
    parser.add_argument("--no-router", action="store_true", help="the engines alone")
    parser.add_argument("--router-url", help="a running router's HTTP base instead of starting "
                        "one, e.g. http://127.0.0.1:52056")
    parser.add_argument("--router-key", default="unused", help="a project API key")
    parser.add_argument("--student-alias", help="an alias on a job whose GGUF is --gguf")
    parser.add_argument("--teacher-alias", help="an alias on the teacher at --fake-url")
    parser.add_argument("--fake-url", help="a fake provider's OpenAI base URL (.../v1); default: "
                        "one started here")
    parser.add_argument("--gateway", default="127.0.0.1:50051", help="for (d)'s SetAlias")
    parser.add_argument("--gateway-token", help="for (d)'s SetAlias, if the gateway needs one")
    parser.add_argument("--swap-job", action="append", default=[],
                        help="(d): jobs/ID the alias moves between (give two or more)")
    parser.add_argument("--swap-every", type=float, default=2.0, help="(d): seconds per swap")
    parser.add_argument("--capture-off-url", help="(e): a router with trace capture off, on "
                        "the same aliases (HTTP base)")
    args = parser.parse_args(argv)

    gguf = args.gguf or packaged_smollm2_gguf()
    figures: dict = {"prompts": args.prompts, "concurrency": args.concurrency,
                     "max_tokens": args.max_tokens, "threads": args.threads, "gguf": gguf.name,
                     "llama_server_poll": args.poll, "rounds": args.rounds,
                     "teacher_requests": args.teacher_requests,
                     "load_average_1m_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        home = Path(tmp)
        if args.no_router:
            figures |= measure(gguf, None, args, home)
        elif args.router_url:
            figures["router"] = "given"
            figures |= measure(gguf, Routers(
                url=f"{args.router_url.rstrip('/')}/v1", key=args.router_key,
                student_alias=args.student_alias, teacher_alias=args.teacher_alias,
                fake_url=args.fake_url, gateway=args.gateway, gateway_token=args.gateway_token,
                swap_jobs=args.swap_job,
                capture_off_url=args.capture_off_url and f"{args.capture_off_url.rstrip('/')}/v1"),
                args, home)
        else:
            figures["router"] = "started"
            with started_routers(gguf, args, home) as routers:
                figures |= measure(gguf, routers, args, home)
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    emit("router", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
