"""CPU time of other processes (the services, call processes and fake servers a benchmark runs)."""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    return sum(user_system_seconds(pid))


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system (kernel: syscalls, loopback TCP) CPU of a process so far, apart."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def process_with_argument(text: str) -> int | None:
    """The pid of a process one of whose arguments contains `text` (e.g. a server's data
    directory), to count the CPU of a server a fixture started without handing out its pid."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if any(text in argument for argument in process.info["cmdline"] or ()):
            return process.pid
    return None
