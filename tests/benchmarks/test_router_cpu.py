"""benchmarks/router_cpu.py's own logic: py-spy's collapsed stacks counted by frame, and the CPU
figures it reads off /proc."""

from __future__ import annotations

import os
import time

from benchmarks.cpu import cpu_seconds, user_system_seconds
from benchmarks.router_cpu import frame_counts

COLLAPSED = """\
run (asyncio/runners.py:118);answer (services/router/routing.py:43);post (http_json.py:93) 6
run (asyncio/runners.py:118);answer (services/router/routing.py:43) 3
run (asyncio/runners.py:118);select (selectors.py:468) 1
"""


def test_frames_count_once_per_sample_inclusive_and_where_they_ran():
    total, inclusive, own = frame_counts(COLLAPSED)
    assert total == 10
    assert inclusive["run runners.py:118"] == 10
    assert inclusive["answer routing.py:43"] == 9
    assert own == {"post http_json.py:93": 6, "answer routing.py:43": 3,
                   "select selectors.py:468": 1}


def test_user_and_system_cpu_add_up_and_grow_with_work():
    user, system = user_system_seconds(os.getpid())
    assert cpu_seconds(os.getpid()) >= user + system
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # burn 50 ms of CPU in this process
        pass
    assert sum(user_system_seconds(os.getpid())) >= user + system + 0.03
