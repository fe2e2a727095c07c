"""Durability: a training killed with SIGKILL and resumed ends with the same adapter as an
uninterrupted one (CPU, fixed seed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import torch
from safetensors.torch import load_file

from services.common.specs.layout import TRAINING_LOG
from services.common.storage import LocalStore
from services.trainer import checkpoints
from tests.fixtures.processes import REPO
from tests.trainer.helpers import curated_rows, put_curated
from tests.trainer.resume_child import INTERVAL, STEPS


def _child(*args: str) -> tuple[int, list[dict]]:
    proc = subprocess.run([sys.executable, "-m", "tests.trainer.resume_child", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-3000:]
    return proc.returncode, events


def test_killed_and_resumed_run_ends_with_the_same_adapter(tmp_path, tiny_llama_dir):
    store = LocalStore(tmp_path / "store")
    curated = put_curated(store, curated_rows(4))  # 2 batches an epoch: 4 steps cross epochs
    common = ["--store", str(tmp_path / "store"), "--model", str(tiny_llama_dir),
              "--curated", curated.uri]

    code, events = _child(*common, "--reference-job", "whole", "--job", "killed",
                          "--kill-after-step", "3")
    assert code == -signal.SIGKILL
    assert [e["step"] for e in events if e["type"] == "Step"][-1] == 3
    assert checkpoints.complete_steps(store, "killed") == [2]  # step 3 was lost
    assert not list(store.list("jobs/killed/adapter/"))

    code, resumed = _child(*common, "--job", "killed", "--resume")
    assert code == 0
    started = next(e for e in resumed if e["type"] == "Started")
    assert started["resumed_from_step"] == INTERVAL and started["total_steps"] == STEPS
    assert [e["step"] for e in resumed if e["type"] == "Step"] == [3, 4]
    assert [e["step"] for e in resumed if e["type"] == "Checkpoint"] == [4]

    whole_steps = [e for e in events if e["type"] == "Step"][:STEPS]
    assert [e["step"] for e in whole_steps] == list(range(1, STEPS + 1))
    # the killed run's step 3 (before the kill) and the resumed step 3 saw the same state
    killed_3 = [e for e in events if e["type"] == "Step" and e["step"] == 3][-1]
    resumed_3 = next(e for e in resumed if e["type"] == "Step")
    assert resumed_3["loss"] == killed_3["loss"]
    assert resumed_3["learning_rate"] == killed_3["learning_rate"]

    whole = _adapter(store, "whole", tmp_path / "whole")
    killed = _adapter(store, "killed", tmp_path / "killed")
    assert whole.keys() == killed.keys() and whole
    for name in whole:
        torch.testing.assert_close(killed[name], whole[name], rtol=1e-5, atol=1e-7)
    finished = next(e for e in resumed if e["type"] == "Finished")
    whole_finished = next(e for e in events if e["type"] == "Finished")
    assert finished["steps"] == whole_finished["steps"] == STEPS
    assert finished["final_loss"] == whole_finished["final_loss"]
    assert finished["tokens"] == whole_finished["tokens"]

    # The training log continues across the resume: steps 1-2 from the checkpoint, 3-4 after it.
    whole_log = _training_log(tmp_path / "whole")
    killed_log = _training_log(tmp_path / "killed")
    assert [row["step"] for row in killed_log] == [row["step"] for row in whole_log] \
        == list(range(1, STEPS + 1))
    for got, want in zip(killed_log, whole_log, strict=True):
        assert (got["loss"], got["learning_rate"], got["epoch"], got["tokens"]) == \
            (want["loss"], want["learning_rate"], want["epoch"], want["tokens"])


def _adapter(store: LocalStore, job: str, dest) -> dict[str, torch.Tensor]:
    store.get_dir(f"jobs/{job}/adapter/", dest)
    return load_file(dest / "adapter_model.safetensors")


def _training_log(adapter_dir) -> list[dict]:
    text = (adapter_dir / TRAINING_LOG).read_text()
    return [json.loads(line) for line in text.splitlines()]
