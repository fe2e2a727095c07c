"""How many call processes the generator starts by default: one per usable core, at most 4,
none on one core; a container's CPU limit (cgroup v2 or v1) caps the cores it sees."""

from __future__ import annotations

import os

import pytest

from services.generator import settings as generator_settings
from services.generator.settings import GeneratorSettings, usable_cores

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("files", "expected"), [
    ({}, AFFINITY),                                                   # no cgroup files
    ({"cpu.max": "max 100000\n"}, AFFINITY),                          # v2, no limit
    ({"cpu.max": "150000 100000\n"}, min(AFFINITY, 2)),               # v2, 1.5 CPUs
    ({"cpu.max": "50000 100000\n"}, 1),                               # v2, half a CPU
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, AFFINITY),
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
    ({"cpu.max": "garbage"}, AFFINITY),                               # unreadable: ignored
])
def test_usable_cores_respects_a_container_cpu_limit(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert usable_cores(tmp_path) == expected


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (2, 2), (3, 3), (16, 4)])
def test_default_call_processes_follow_the_cores(monkeypatch, cores, expected):
    monkeypatch.setattr(generator_settings, "usable_cores", lambda: cores)
    assert GeneratorSettings().call_process_count() == expected
    assert GeneratorSettings(teacher_processes=0).call_process_count() == 0
    assert GeneratorSettings(teacher_processes=3).call_process_count() == 3
