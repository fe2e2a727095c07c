"""The `distill` command line against real processes."""

from __future__ import annotations

import random
import signal
import subprocess
import sys

from distill.local_suite import check_health
from tests.fixtures.processes import REPO
from tests.fixtures.waits import wait_for


def test_up_starts_the_whole_suite_healthy_and_ctrl_c_stops_it(tmp_path):
    # gRPC ports and their metrics ports (+1000) below the kernel's ephemeral range
    # (32768+), where outgoing connections and free ports come from.
    base = random.randrange(20000, 31000, 10)
    addresses = [f"127.0.0.1:{base + i}" for i in range(5)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "distill.cli", "--home", str(tmp_path), "--base-port", str(base),
         "up"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def all_serving() -> bool:
            assert proc.poll() is None, proc.stderr.read()
            return all(check_health(a, timeout=2) == "SERVING" for a in addresses)

        wait_for(all_serving, "all five services SERVING", interval=0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert stderr.count("SERVING") == 5
    assert len(list((tmp_path / "logs").glob("*.log"))) == 5
    assert all(check_health(a, timeout=0.5) == "UNREACHABLE" for a in addresses)


def test_unknown_command_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "distill.cli", "frobnicate"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_user_mistake_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "distill.cli", "--gateway", "127.0.0.1:9", "get", "jobs/x"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr and "Traceback" not in result.stderr
