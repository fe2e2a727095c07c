"""The benchmark convention: every script ends with one line `RESULT {json}`.

The JSON holds the benchmark's name, its figures and the machine it ran on, so a line pasted
into benchmarks/RESULTS.md is self-describing.
"""

from __future__ import annotations

import json
import os
import platform
from typing import Any


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/meminfo") as meminfo:
            kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
        with open("/proc/cpuinfo") as cpuinfo:
            names = (line.split(":", 1)[1].strip() for line in cpuinfo
                     if line.startswith("model name"))
            info["cpu"] = next(names, info["cpu"])
    except (OSError, StopIteration):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def emit(benchmark: str, figures: dict[str, Any]) -> None:
    print("RESULT " + json.dumps({"benchmark": benchmark, "figures": figures,
                                  "machine": machine()}, sort_keys=True), flush=True)
