"""`distill`: the command line over the Distiller SDK and the local suite.

User mistakes get one clear line and exit code 2 (1 for a failed job), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf import json_format
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from distill import chat as chat_module
from distill import demo as demo_module
from distill.client import TERMINAL, DistillClientError, Distiller
from distill.local_suite import SERVICES, LocalSuite, SuiteTls, consecutive_ports
from distill.v1 import common_pb2, gateway_pb2

console = Console(stderr=True)
out = Console()
STATE = gateway_pb2.JobState.Name


def _state(job: gateway_pb2.Job) -> str:
    return STATE(job.state).removeprefix("JOB_STATE_").lower()


# -- the local suite ------------------------------------------------------------------------------

def _suite(args: argparse.Namespace, tls: SuiteTls | None = None) -> LocalSuite:
    home = Path(args.home).resolve()
    env = {"DISTILL_STORE_URL": f"file://{home / 'artifacts'}",
           "DISTILL_GATEWAY_DB_PATH": str(home / "gateway.db"), "PYTHONUNBUFFERED": "1"}
    return LocalSuite(log_dir=home / "logs", env={**env, **os.environ},
                      ports=consecutive_ports(args.base_port), tls=tls)


def _suite_tls(args: argparse.Namespace) -> SuiteTls | None:
    """`up --tls-cert --tls-key` with the CA (`--ca-file`); a mistake is a ValueError naming
    the flag."""
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("--tls-cert and --tls-key: give both (TLS) or neither")
    if args.ca_file is None:
        raise ValueError("--ca-file: TLS needs the CA that signed --tls-cert (the gateway "
                         "checks the stages' certificates with it, the router the gateway's)")
    files = {"--tls-cert": args.tls_cert, "--tls-key": args.tls_key, "--ca-file": args.ca_file}
    for flag, path in files.items():
        if not Path(path).is_file():
            raise ValueError(f"{flag}: no file at {path}")
    cert, key, ca = (Path(p).resolve() for p in files.values())
    return SuiteTls(cert, key, ca)


def _start(suite: LocalSuite) -> None:
    with console.status("starting the six services on loopback..."):
        suite.start()
    table = Table(title="distill suite" + (" (TLS)" if suite.tls else ""))
    for column in ("service", "address", "health", "log"):
        table.add_column(column)
    health = suite.health()
    for name in SERVICES:
        table.add_row(name, suite.address(name), health[name], str(suite.processes[name].log_path))
    console.print(table)


def _how_to_connect(suite: LocalSuite) -> str:
    gateway = suite.address("gateway")
    http_port = (suite.processes["router"].serving_event() or {}).get("http_port")
    if suite.tls is None:
        return (f"gateway at [bold]{gateway}[/bold]"
                + (f", router's HTTP API at http://127.0.0.1:{http_port}/v1" if http_port else ""))
    ca = suite.tls.ca_file
    return (f"gateway at [bold]{gateway}[/bold], TLS only: "
            f"distill --gateway {gateway} --ca-file {ca} jobs, "
            f"or Distiller(\"{gateway}\", ca_file=\"{ca}\")"
            + (f"; router's HTTP API at https://127.0.0.1:{http_port}/v1 (trust {ca})"
               if http_port else ""))


def cmd_up(args: argparse.Namespace) -> int:
    try:
        tls = _suite_tls(args)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    # Handlers set here, not inherited: a shell starts background jobs with SIGINT ignored.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    suite = _suite(args, tls)
    try:
        _start(suite)
        console.print(f"{_how_to_connect(suite)}; Ctrl-C stops all six", soft_wrap=True)
        while not stop.wait(0.5):
            dead = [n for n, p in suite.processes.items() if p.proc.poll() is not None]
            if dead:
                console.print(f"[red]stopped unexpectedly: {', '.join(dead)}[/red]")
                return 1
        return 0
    finally:
        suite.stop()


# -- jobs -----------------------------------------------------------------------------------------

def _client(args: argparse.Namespace, token: str | None = None) -> Distiller:
    return Distiller(args.gateway, token=token or os.environ.get("DISTILL_AUTH_TOKEN"),
                     tls=args.tls, ca_file=args.ca_file)


def _spec(args: argparse.Namespace, client: Distiller) -> gateway_pb2.DistillSpec:
    if args.spec:
        spec = client.spec_from_dict(json.loads(Path(args.spec).read_text()))
    else:
        spec = gateway_pb2.DistillSpec()
    if args.dataset and "://" in args.dataset:  # already stored (e.g. from `traces export`)
        spec.dataset.uri = args.dataset
    elif args.dataset:
        spec.dataset.CopyFrom(client.upload(args.dataset))
    if args.teacher:
        spec.teacher.model = args.teacher
    if args.student:
        spec.student_model = args.student
    if args.n:
        spec.n_samples = args.n
    if args.budget is not None:
        spec.budget_usd = args.budget
    if args.alias:
        spec.promote_alias = args.alias
    if args.judge == "reference":
        spec.judge.judge.reference.mode = common_pb2.MATCH_MODE_LABEL
    elif args.judge == "llm" or not spec.judge.HasField("judge"):
        spec.judge.judge.llm.SetInParent()
    return spec


def cmd_estimate(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.estimate(_spec(args, client), batch_api=args.batch_api)
    table = Table(title=f"estimate for {result.prompts} prompts")
    for column in ("item", "quantity", "unit", "USD low", "USD high"):
        table.add_column(column, justify="right" if column != "item" else "left")
    for line in result.breakdown:
        table.add_row(line.item, f"{line.quantity:,.0f}", line.unit, f"{line.usd_low:.4f}",
                      f"{line.usd_high:.4f}")
    table.add_row("total", "", "", f"{result.total_usd_low:.4f}", f"{result.total_usd_high:.4f}")
    out.print(table)
    if result.peak_vram_gb:
        out.print(f"GPU hours {result.gpu_hours_low:.3f}-{result.gpu_hours_high:.3f}, "
                  f"peak VRAM {result.peak_vram_gb:g} GB")
    for line in result.assumptions:
        out.print(f"[dim]assumption:[/dim] {line}")
    for line in result.warnings:
        out.print(f"[yellow]warning:[/yellow] {line}")
    return 0


def follow(client: Distiller, name: str) -> gateway_pb2.Job:
    """Progress bars per stage, with cost so far and ETA, until the job ends."""
    columns = (TextColumn("{task.description:<10}"), BarColumn(), TaskProgressColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    tasks: dict[int, int] = {}
    job = client.get(name)
    with Progress(*columns, console=console) as bars:
        for job in client.watch(name):
            stage = job.state
            if stage in TERMINAL or stage == gateway_pb2.JOB_STATE_PENDING:
                continue
            if stage not in tasks:
                for other in tasks.values():
                    bars.update(other, completed=bars.tasks[other].total or 1)
                tasks[stage] = bars.add_task(_state(job), total=None, info="")
            info = f"${job.cost_usd:.4f}"
            if job.train_loss:
                info += f"  loss {job.train_loss:.3f}"
            if job.progress.message:
                info += f"  {job.progress.message}"
            bars.update(tasks[stage], completed=job.progress.done,
                        total=job.progress.total or None, info=info)
    return job


def print_evaluation(job: gateway_pb2.Job) -> None:
    """The held-out comparison of student, untrained student and teacher, and the gate."""
    _print_evaluation(job.evaluation)


def print_warnings(job: gateway_pb2.Job) -> None:
    for warning in job.warnings:
        out.print(f"[yellow]warning:[/yellow] {warning}")


def _print_evaluation(e: gateway_pb2.Evaluation) -> None:
    if not e.prompts:
        return
    names = {"student": "student (trained)", "base": "student (untrained)", "teacher": "teacher"}
    table = Table(title=f"evaluation on {e.prompts} held-out prompts")
    for column in ("model", "mean score", "pass rate", "latency s", "USD / 1k requests"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for m in sorted(e.models, key=lambda m: list(names).index(m.model)):
        table.add_row(names[m.model], f"{m.mean_score:.2f}",
                      f"{m.pass_rate:.0%}" if m.HasField("pass_rate") else "-",
                      f"{m.latency_seconds_mean:.3f}", f"{m.cost_per_1k_requests_usd:.4f}")
    out.print(table)
    out.print(f"student vs teacher: {e.student_wins} wins, {e.student_ties} ties, "
              f"{e.student_losses} losses (win rate {e.student_win_rate:.0%}; 50% is parity)")
    out.print(("[green]" if e.promoted else "[yellow]") + e.promotion_reason + "[/]")


def _report(job: gateway_pb2.Job) -> int:
    if job.state == gateway_pb2.JOB_STATE_SUCCEEDED:
        out.print(f"[green]{job.name} succeeded[/green]: cost {job.cost_usd:.4f} USD; "
                  f"student GGUF {job.outputs.student_gguf.uri}")
        print_evaluation(job)
        print_warnings(job)
        if job.promoted_alias_version:
            out.print(f"alias {job.spec.promote_alias} -> version {job.promoted_alias_version}")
        return 0
    out.print(f"[red]{job.name} {_state(job)}[/red]: {job.error.code} {job.error.message}")
    return 1


def cmd_run(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.distill(_spec(args, client))
        console.print(f"started {job.name}")
        if args.detach:
            out.print(job.name)
            return 0
        return _report(follow(client, job.name))


def cmd_jobs(args: argparse.Namespace) -> int:
    table = Table()
    for column in ("job", "state", "name", "cost USD", "created"):
        table.add_column(column)
    with _client(args) as client:
        for i, job in enumerate(client.list()):
            if i >= args.limit:
                break
            table.add_row(job.name, _state(job), job.spec.display_name, f"{job.cost_usd:.4f}",
                          job.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"))
    out.print(table)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _report(follow(client, args.job))


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        out.print_json(json_format.MessageToJson(client.get(args.job)))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel(args.job)
    out.print(f"{job.name} {_state(job)}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        deleted = client.delete(args.job)
    out.print(f"deleted {args.job} and its {deleted.artifacts_deleted} stored artifacts, and "
              f"{deleted.cache_entries_deleted} teacher-cache entries no other job uses")
    return 0


def cmd_datasets_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        deleted = client.delete_dataset(args.uri)
    out.print(f"deleted {args.uri} ({deleted} stored artifact{'s' if deleted != 1 else ''})")
    return 0


EVENT_KIND = gateway_pb2.JobEventKind.Name


def cmd_logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for event in client.logs(args.job, follow=args.follow):
            when = event.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
            kind = EVENT_KIND(event.kind).removeprefix("JOB_EVENT_KIND_").lower()
            # Plain print: one line per event, however long, for grep and tail.
            print(f"{when}Z  {kind:<8}  {STATE(event.state).removeprefix('JOB_STATE_').lower():<10}"
                  f"  {event.message}", flush=True)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    with _client(args) as client:
        metrics = client.metrics(args.job)
    if args.json:
        print(json_format.MessageToJson(metrics))
        return 0
    if metrics.training:
        table = Table(title=f"training curve ({len(metrics.training)} logged steps)")
        columns = ("step", "epoch", "loss", "sft_loss", "preference_loss", "kl_loss",
                   "learning_rate", "tokens_per_second")
        for column in columns:
            table.add_column(column.replace("_", " "), justify="right")
        for row in metrics.training:
            table.add_row(str(row.step), *(
                (f"{getattr(row, c):.4g}" if row.HasField(c) else "-") for c in columns[1:]))
        out.print(table)
    else:
        out.print(f"training curve: {metrics.training_note}")
    if metrics.HasField("evaluation"):
        _print_evaluation(metrics.evaluation)
    else:
        out.print("evaluation: none yet")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    job_id = args.job.rsplit("/", 1)[-1]
    with _client(args) as client:
        index = client.download_report(args.job, args.out or Path(f"distill-report-{job_id}"))
    print(index.resolve())  # plain, so scripts can open it
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.alias_command == "set":
            alias = client.set_alias(
                args.name, job=args.job, teacher=args.teacher,
                expected_version=args.expected_version, description=args.reason,
                routing=json.loads(args.routing.read_text()) if args.routing else None)
        elif args.alias_command == "get":
            alias = client.get_alias(args.name)
        elif args.alias_command == "rollback":
            alias = client.rollback_alias(args.name, args.to_version, args.expected_version)
        elif args.alias_command == "report":
            index = client.download_alias_report(
                args.name, args.out or Path(f"distill-alias-{args.name}"), args.days)
            print(index.resolve())  # plain, so scripts can open it
            return 0
        elif args.alias_command == "watch":
            return _watch_aliases(client)
        else:
            for alias in client.list_aliases():
                out.print(f"{alias.name}  v{alias.version}  {_target(alias.target)}")
            return 0
    out.print(f"{alias.name}  v{alias.version}  {_target(alias.target)}")
    return 0


def cmd_traces(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.traces_command == "list":
            for day in client.trace_days(args.alias):
                out.print(f"{day.day}  {day.segments} segments  {day.size_bytes} bytes")
            return 0
        result = client.dataset_from_traces(
            args.alias, since=_when(args.since), until=_when(args.until), targets=args.target,
            fallbacks_only=args.fallbacks, validator_failed_only=args.failed,
            tags=dict(_tag(t) for t in args.tag), keep_duplicates=args.keep_duplicates,
            max_rows=args.max_rows, seed=args.seed,
            answers_as_reference=args.answers_as_reference)
        console.print(f"{result.traces_scanned} traces in {result.segments_read} segments, "
                      f"{result.traces_matched} matched, {result.duplicates_dropped} duplicates "
                      f"dropped: {result.prompts} prompts")
        if args.out:
            client.download(result.dataset.uri, args.out)
            console.print(f"written to {args.out}")
    print(result.dataset.uri)  # plain, for `distill run --dataset URI`
    return 0


_AGO = re.compile(r"(\d+)([dh])")


def _when(text: str | None) -> datetime | None:
    """'7d' / '12h' ago, or an ISO date or time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if match := _AGO.fullmatch(text):
        unit = {"d": 86400, "h": 3600}[match.group(2)]
        return datetime.now(UTC) - timedelta(seconds=int(match.group(1)) * unit)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"distill: {text!r} is not a time: use 7d, 12h or an ISO date") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"distill: --tag {text!r}: expected KEY=VALUE")
    return key, value


def cmd_keys(args: argparse.Namespace) -> int:
    with _client(args, token=os.environ.get("DISTILL_ADMIN_TOKEN")) as client:
        if args.keys_command == "create":
            created = client.create_api_key(args.project, args.description)
            out.print(f"{created.api_key.name}  project {created.api_key.project}")
            console.print("the key is shown this once; store it now:")
            out.print(created.key, markup=False, highlight=False)
        elif args.keys_command == "revoke":
            key = client.revoke_api_key(args.name)
            out.print(f"{key.name}  project {key.project}  revoked")
        else:
            for key in client.list_api_keys(args.project):
                state = "revoked" if key.HasField("revoke_time") else "valid"
                out.print(f"{key.name}  {key.project}  {state}  "
                          f"{key.create_time.ToDatetime():%Y-%m-%d %H:%M}  {key.description}",
                          markup=False, highlight=False)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    print(chat_module.ask(args.alias, args.text, router_url=args.router,
                          max_tokens=args.max_tokens, temperature=args.temperature))
    return 0


def _watch_aliases(client: Distiller) -> int:
    """Every alias, then each change as it happens, one line each, until Ctrl-C."""
    for reply in client.watch_aliases():
        if reply.HasField("snapshot"):
            out.print(f"[{reply.sequence}] snapshot: {len(reply.snapshot.aliases)} aliases",
                      markup=False, highlight=False)
            states = list(reply.snapshot.aliases)
        else:
            states = [reply.change]
        for state in states:
            owner = "" if state.project in ("", "default") else f"  (project {state.project})"
            out.print(f"[{reply.sequence}] {state.name}  v{state.version}  "
                      f"{_target(state.target)}{owner}", markup=False, highlight=False)
    return 0


def _target(target: gateway_pb2.AliasTarget) -> str:
    if target.job:
        return f"{target.job} ({target.gguf.uri})"
    return f"teacher {target.teacher.model}"


# -- the parser -----------------------------------------------------------------------------------

def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", help="a DistillSpec as JSON (flags below override it)")
    parser.add_argument("--dataset", help="a local JSONL file to upload and use, or the URI of "
                        "a stored dataset (as `distill traces export` prints)")
    parser.add_argument("--teacher", help="teacher model (e.g. gpt-4o-mini, smollm2-135m-gguf)")
    parser.add_argument("--student", help="student model (e.g. smollm2-135m, qwen3-0.6b)")
    parser.add_argument("-n", type=int, help="samples per prompt (unset: the gateway's default)")
    parser.add_argument("--judge", choices=["llm", "reference"],
                        help="llm (rubric, default) or reference (match the dataset's answers)")
    parser.add_argument("--budget", type=float, help="stop spending at this many USD")
    parser.add_argument("--alias", help="promote this alias to the student on success")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distill", description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default=os.environ.get("DISTILL_GATEWAY", "127.0.0.1:50051"),
                        help="gateway address (default 127.0.0.1:50051, env DISTILL_GATEWAY)")
    parser.add_argument("--tls", action="store_true",
                        default=os.environ.get("DISTILL_TLS", "").lower() in ("1", "true", "yes"),
                        help="talk TLS to the gateway (env DISTILL_TLS=1)")
    parser.add_argument("--ca-file", default=os.environ.get("DISTILL_CA_FILE") or None,
                        help="PEM CA that signed the gateway's certificate (implies --tls; "
                        "default: the system's roots; env DISTILL_CA_FILE)")
    parser.add_argument("--home", default=".distill",
                        help="folder for the embedded store, job database and logs (up, demo)")
    parser.add_argument("--base-port", type=int, default=50051,
                        help="first of six consecutive ports for up/demo (default 50051)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the six services locally; Ctrl-C stops them")
    up.add_argument("--tls-cert", metavar="FILE",
                    help="PEM certificate chain every service serves TLS with (it must name "
                    "127.0.0.1); needs --tls-key and --ca-file")
    up.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    # Here as well as before the command; SUPPRESS keeps the global one when not given here.
    up.add_argument("--ca-file", default=argparse.SUPPRESS,
                    help="PEM CA that signed --tls-cert (the suite's channels trust it)")
    up.set_defaults(func=cmd_up)
    estimate = sub.add_parser("estimate", help="cost, time and memory before spending")
    _spec_arguments(estimate)
    estimate.add_argument("--batch-api", action="store_true", help="price at the Batch API rate")
    estimate.set_defaults(func=cmd_estimate)
    run = sub.add_parser("run", help="start a distillation and follow it")
    _spec_arguments(run)
    run.add_argument("--detach", action="store_true", help="print the job name and return")
    run.set_defaults(func=cmd_run)
    jobs = sub.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(func=cmd_jobs)
    for name, func, help_text in (("watch", cmd_watch, "follow a job until it ends"),
                                  ("get", cmd_get, "a job as JSON"),
                                  ("cancel", cmd_cancel, "stop a job's spending"),
                                  ("delete", cmd_delete, "delete a finished job and the "
                                   "artifacts only it uses")):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("job", help="jobs/{id}")
        command.set_defaults(func=func)
    datasets = sub.add_parser("datasets", help="uploaded datasets")
    datasets_sub = datasets.add_subparsers(dest="datasets_command", required=True)
    datasets_delete = datasets_sub.add_parser(
        "delete", help="delete an upload no unfinished job uses")
    datasets_delete.add_argument("uri", help="the dataset's URI, as the upload printed it")
    datasets_delete.set_defaults(func=cmd_datasets_delete)
    logs = sub.add_parser("logs", help="a job's event log: state changes, steps, retries, "
                          "warnings and errors, with their times (UTC)")
    logs.add_argument("job", help="jobs/{id}")
    logs.add_argument("--follow", "-f", action="store_true",
                      help="keep printing as the job runs, until it ends")
    logs.set_defaults(func=cmd_logs)
    metrics = sub.add_parser("metrics", help="a job's training curve and evaluation figures")
    metrics.add_argument("job", help="jobs/{id}")
    metrics.add_argument("--json", action="store_true", help="print them as JSON")
    metrics.set_defaults(func=cmd_metrics)
    report = sub.add_parser("report", help="download a job's report (HTML page, PNG plots, "
                            "report.json) and print the path of its index.html")
    report.add_argument("job", help="jobs/{id}")
    report.add_argument("--out", type=Path,
                        help="folder to write it into (default ./distill-report-{id})")
    report.set_defaults(func=cmd_report)
    alias = sub.add_parser("alias", help="stable names for trained students")
    alias_sub = alias.add_subparsers(dest="alias_command", required=True)
    alias_set = alias_sub.add_parser("set", help="point an alias at a job's student or a teacher")
    alias_set.add_argument("name")
    target = alias_set.add_mutually_exclusive_group(required=True)
    target.add_argument("--job")
    target.add_argument("--teacher")
    alias_set.add_argument("--expected-version", type=int, default=0,
                           help="the version you last saw (0 to create)")
    alias_set.add_argument("--reason", default="", help="why: kept in the version history")
    alias_set.add_argument("--routing", type=Path,
                           help="an AliasRouting as JSON: canary and shadow targets, validator, "
                           "live judge, trace capture (see README)")
    alias_get = alias_sub.add_parser("get")
    alias_get.add_argument("name")
    alias_sub.add_parser("list")
    alias_sub.add_parser("watch", help="every alias, then each change as it happens (Ctrl-C ends)")
    rollback = alias_sub.add_parser("rollback", help="restore an earlier version's target")
    rollback.add_argument("name")
    rollback.add_argument("--to-version", type=int, default=0, help="default: the previous one")
    rollback.add_argument("--expected-version", type=int, default=0)
    alias_report = alias_sub.add_parser("report", help="the alias page: traffic per target, "
                                        "fallbacks, latency, cost, versions; prints its path")
    alias_report.add_argument("name")
    alias_report.add_argument("--days", type=int, default=0, help="the window (default 7)")
    alias_report.add_argument("--out", type=Path,
                              help="folder to write it into (default ./distill-alias-{name})")
    alias.set_defaults(func=cmd_alias)
    traces = sub.add_parser("traces", help="what the router recorded of an alias's traffic")
    traces_sub = traces.add_subparsers(dest="traces_command", required=True)
    traces_sub.add_parser("list", help="the days with traces").add_argument("alias")
    export = traces_sub.add_parser("export", help="a dataset from the traces; prints its URI")
    export.add_argument("alias")
    export.add_argument("--since", help="7d, 12h or an ISO time (default: 7 days before --until)")
    export.add_argument("--until", help="as --since (default: now)")
    export.add_argument("--target", action="append", default=[],
                        choices=["student", "teacher", "upstream"], help="served by (repeatable)")
    export.add_argument("--fallbacks", action="store_true",
                        help="only requests the teacher answered after a validator failure")
    export.add_argument("--failed", action="store_true",
                        help="only answers that failed the alias's validator")
    export.add_argument("--tag", action="append", default=[], help="KEY=VALUE (repeatable)")
    export.add_argument("--keep-duplicates", action="store_true")
    export.add_argument("--max-rows", type=int, default=0, help="sample at most this many")
    export.add_argument("--seed", type=int, default=0, help="the sampling seed")
    export.add_argument("--answers-as-reference", action="store_true",
                        help="the served answer becomes each row's reference")
    export.add_argument("--out", type=Path, help="also download the dataset to this file")
    traces.set_defaults(func=cmd_traces)
    keys = sub.add_parser("keys", help="projects' API keys (needs DISTILL_ADMIN_TOKEN, the "
                          "gateway's admin key)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_create = keys_sub.add_parser("create", help="a new key for a project; printed once")
    keys_create.add_argument("project")
    keys_create.add_argument("--description", default="", help="who or what holds the key")
    keys_list = keys_sub.add_parser("list", help="every key (not the keys themselves)")
    keys_list.add_argument("--project", default="", help="only this project's")
    keys_revoke = keys_sub.add_parser("revoke", help="refuse a key from its next call on")
    keys_revoke.add_argument("name", help="apiKeys/{id}, from `distill keys list`")
    keys.set_defaults(func=cmd_keys)
    chat = sub.add_parser("chat", help="ask an alias through the router's OpenAI API")
    chat.add_argument("alias", help="an alias, or alias@version")
    chat.add_argument("text", help="the user message")
    chat.add_argument("--router", default=os.environ.get("DISTILL_ROUTER_URL",
                                                         chat_module.DEFAULT_ROUTER_URL),
                      help=f"the router's HTTP address (default {chat_module.DEFAULT_ROUTER_URL},"
                           " env DISTILL_ROUTER_URL); the API key is DISTILL_API_KEY")
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--temperature", type=float)
    chat.set_defaults(func=cmd_chat)
    demo = sub.add_parser("demo", help="the embedded demo: a whole distillation, locally")
    demo.add_argument("--dataset", type=Path, default=demo_module.DEFAULT_DATASET,
                      help="training JSONL (default: the bundled sentiment task)")
    demo.add_argument("--steps", type=int, default=demo_module.DEFAULT_STEPS,
                      help="training steps")
    demo.set_defaults(func=cmd_demo)
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    suite = _suite(args)
    try:
        _start(suite)
        with Distiller(suite.address("gateway")) as client:
            job = client.distill(demo_module.spec(client, args.dataset, args.steps))
            console.print(f"started {job.name} on {args.dataset}")
            job = follow(client, job.name)
            code = _report(job)
            if code == 0:
                # The demo's claim: a non-zero exit when training did not beat the base.
                code = 0 if demo_module.show_comparison(job, out) else 1
                if job.outputs.report.uri:
                    page = client.download_report(job.name, Path(args.home) / "report")
                    out.print(f"report: {page}")
                if job.promoted_alias_version:
                    http_port = suite.processes["router"].serving_event()["http_port"]
                    demo_module.show_answer(client, f"http://127.0.0.1:{http_port}", out)
            return code
    finally:
        suite.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Ctrl-C (SIGINT) ends every command with 130, however it was started: a non-interactive
    # shell starts background jobs with SIGINT ignored and their children inherit that, and
    # Python then installs no KeyboardInterrupt handler, so `alias watch` or `logs --follow`
    # run from a script could not be stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(args.func(args))
    except DistillClientError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2 if exc.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                   grpc.StatusCode.FAILED_PRECONDITION,
                                   grpc.StatusCode.ABORTED) else 1)
    except (OSError, RuntimeError, TimeoutError, json.JSONDecodeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
