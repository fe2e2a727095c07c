"""`distill`: the command line. User mistakes get one clear line and exit code 2, no traceback."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distill.local_suite import DEFAULT_PORTS, SERVICES, LocalSuite

console = Console(stderr=True)


def _suite(args: argparse.Namespace) -> LocalSuite:
    home = Path(args.home).resolve()
    env = {"DISTILL_STORE_URL": f"file://{home / 'artifacts'}", "PYTHONUNBUFFERED": "1"}
    ports = {name: args.base_port + i for i, name in enumerate(DEFAULT_PORTS)}
    return LocalSuite(log_dir=home / "logs", env={**env, **os.environ}, ports=ports)


def _start(suite: LocalSuite) -> None:
    with console.status("starting the five services on loopback..."):
        suite.start()
    table = Table(title="distill suite")
    for column in ("service", "address", "health", "log"):
        table.add_column(column)
    health = suite.health()
    for name in SERVICES:
        process = suite.processes[name]
        table.add_row(name, suite.address(name), health[name], str(process.log_path))
    console.print(table)


def cmd_up(args: argparse.Namespace) -> int:
    suite = _suite(args)
    _start(suite)
    console.print(f"gateway at [bold]{suite.address('gateway')}[/bold]; Ctrl-C stops all five")
    try:
        while all(p.proc.poll() is None for p in suite.processes.values()):
            time.sleep(0.5)
        dead = [n for n, p in suite.processes.items() if p.proc.poll() is not None]
        console.print(f"[red]stopped unexpectedly: {', '.join(dead)}[/red]")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        suite.stop()


def cmd_demo(args: argparse.Namespace) -> int:
    # Until the gateway runs jobs (issue 7), the demo proves the suite starts and is healthy.
    suite = _suite(args)
    try:
        _start(suite)
        healthy = all(status == "SERVING" for status in suite.health().values())
    finally:
        codes = suite.stop()
    console.print("all services stopped cleanly" if not any(codes.values())
                  else f"[red]exit codes: {codes}[/red]")
    return 0 if healthy and not any(codes.values()) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distill", description=__doc__)
    parser.add_argument("--home", default=".distill",
                        help="folder for the embedded store and logs (default ./.distill)")
    parser.add_argument("--base-port", type=int, default=50051,
                        help="first of five consecutive ports (default 50051)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the five services locally; Ctrl-C stops them").set_defaults(
        func=cmd_up)
    sub.add_parser("demo", help="run the embedded demo").set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.func(args))
    except (RuntimeError, TimeoutError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
