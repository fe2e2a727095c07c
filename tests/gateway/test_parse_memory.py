"""Parsing a dataset and splitting off its held-out rows hold at most ~4x the file in memory.

A 20 MB JSONL of `{"prompt":"a"}` lines (the shortest rows, so the most rows a byte) is loaded
and split in a fresh interpreter, measured twice: the growth of its resident set (RSS), then
the peak of Python's own allocations (tracemalloc, which slows every allocation down, so it
runs second and its own bookkeeping stays out of the RSS figure). A protobuf a row was ~57x.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.common.storage.local import LocalStore

BOUND = 4  # times the file's size
_MEASURE = r"""
import gc, json, resource, sys, tracemalloc
from pathlib import Path
from distill.v1 import common_pb2, gateway_pb2
from services.common.datasets import load_dataset
from services.common.storage.local import LocalStore
from services.gateway import evaluation

store = LocalStore(Path(sys.argv[1]))
stored = store.stat("datasets/big.jsonl")
spec = gateway_pb2.DistillSpec(dataset=stored.as_proto())
spec.eval.holdout_fraction = 0.1

def load_and_split(job_id):
    prompts = load_dataset(store, spec.dataset)
    evaluation.split(store, job_id, spec, prompts)
    return len(prompts)

def rss():
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()

def high_water():
    # VmHWM, this process's own peak. Not ru_maxrss: Linux carries that across exec, so a child
    # of a large pytest process starts with its parent's peak.
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024

gc.collect()
before = rss()
rows = load_and_split("rss")
grown = high_water() - before
gc.collect()
tracemalloc.start()
load_and_split("traced")
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"rows": rows, "size": stored.size_bytes, "rss_growth": grown, "peak": peak}))
"""


@pytest.mark.slow
@pytest.mark.timeout(1800)  # tracemalloc slows the parse of 1.3 M lines several times over
def test_parse_and_split_hold_at_most_4x_the_file(tmp_path):
    line = b'{"prompt":"a"}\n'
    LocalStore(tmp_path).put_bytes("datasets/big.jsonl", line * (20_000_000 // len(line)))
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path)], capture_output=True,
                         text=True, check=True)
    m = json.loads(run.stdout)
    assert m["rows"] == 20_000_000 // len(line) and m["size"] >= 19_999_990
    assert m["rss_growth"] <= BOUND * m["size"], m
    assert m["peak"] <= BOUND * m["size"], m
    print(f"RSS growth {m['rss_growth'] / m['size']:.2f}x, tracemalloc peak "
          f"{m['peak'] / m['size']:.2f}x the file")
