"""The `distill` command line against real processes."""

from __future__ import annotations

import random
import subprocess
import sys

from distill.local_suite import check_health
from tests.fixtures.processes import REPO


def test_demo_starts_the_whole_suite_healthy_and_stops_it(tmp_path):
    base = random.randrange(40000, 60000, 10)
    result = subprocess.run(
        [sys.executable, "-m", "distill.cli", "--home", str(tmp_path), "--base-port", str(base),
         "demo"],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("SERVING") == 5
    assert "stopped cleanly" in result.stderr
    assert len(list((tmp_path / "logs").glob("*.log"))) == 5
    assert check_health(f"127.0.0.1:{base}", timeout=0.5) == "UNREACHABLE"  # really stopped


def test_unknown_command_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "distill.cli", "frobnicate"],
                            cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr
