"""Checkpoints in the artifact store: jobs/{job_id}/checkpoints/step-{n}/.

A checkpoint folder holds the PEFT adapter (`adapter/`), `trainer_state.pt` (optimizer, scheduler,
RNG states, data position, counters), `training_log.jsonl` (one line per step so far, continued on
resume) and, written last, `checkpoint.json`. A folder without
`checkpoint.json` is a checkpoint whose upload was cut off (a killed process) and is ignored: the
newest complete one is what `resume` continues from.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

from services.common.errors import FailedPrecondition
from services.common.specs.layout import JobKeys
from services.common.storage import FOLDER_MEDIA_TYPE, ArtifactStore, StoredObject
from services.common.storage.base import folder_digest

MANIFEST = "checkpoint.json"
STATE_FILE = "trainer_state.pt"
ADAPTER_DIR = "adapter"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d+)/" + re.escape(MANIFEST) + "$")


def checkpoints_prefix(job_id: str) -> str:
    return JobKeys(job_id).checkpoints


def checkpoint_prefix(job_id: str, step: int) -> str:
    return JobKeys(job_id).checkpoint(step)


def adapter_prefix(job_id: str) -> str:
    return JobKeys(job_id).adapter


def complete_steps(store: ArtifactStore, job_id: str) -> list[int]:
    """Steps of the complete checkpoints of `job_id`, ascending."""
    prefix = checkpoints_prefix(job_id)
    steps = []
    for key in store.list(prefix):
        match = _STEP_DIR.match(key[len(prefix):])
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps)


def newest_step(store: ArtifactStore, job_id: str) -> int | None:
    steps = complete_steps(store, job_id)
    return steps[-1] if steps else None


def upload(store: ArtifactStore, job_id: str, step: int, local_dir: Path,
           manifest: dict[str, Any]) -> StoredObject:
    """Uploads `local_dir` as step-{step}/, the manifest last; returns the folder's ref."""
    prefix = checkpoint_prefix(job_id, step)
    store.delete_prefix(prefix)  # leftovers of an upload cut off earlier
    entries: dict[str, str] = {}
    total = 0
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        if rel == MANIFEST:
            continue
        ref = store.put_file(prefix + rel, path)
        entries[rel] = ref.sha256
        total += ref.size_bytes
    body = json.dumps({**manifest, "format": FORMAT_VERSION, "step": step, "files": entries},
                      indent=2, sort_keys=True).encode()
    ref = store.put_bytes(prefix + MANIFEST, body, media_type="application/json")
    entries[MANIFEST] = ref.sha256
    total += ref.size_bytes
    return StoredObject(store.uri(prefix), folder_digest(entries), total, FOLDER_MEDIA_TYPE)


def download(store: ArtifactStore, job_id: str, step: int, dest: Path) -> dict[str, Any]:
    """Fetches step-{step}/ into `dest` (every file sha256-checked); returns its manifest."""
    prefix = checkpoint_prefix(job_id, step)
    store.get_dir(prefix, dest)
    manifest = json.loads((dest / MANIFEST).read_text())
    for rel, sha in manifest.get("files", {}).items():
        if store.stat(prefix + rel).sha256 != sha:
            raise FailedPrecondition(f"checkpoint {prefix} is inconsistent: {rel} changed")
    return manifest


def prune(store: ArtifactStore, job_id: str, keep: int) -> None:
    """Deletes all but the newest `keep` complete checkpoints (and nothing else)."""
    steps = complete_steps(store, job_id)
    for step in steps[:-keep] if keep > 0 else []:
        prefix = checkpoint_prefix(job_id, step)
        store.delete(prefix + MANIFEST)  # first: a half-deleted folder is never "complete"
        store.delete_prefix(prefix)


def write_training_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """Writes `rows` (one per step) as JSON lines; non-finite numbers become null."""
    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and not math.isfinite(value) else value

    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps({k: clean(v) for k, v in row.items()}, allow_nan=False) + "\n")


def read_training_log(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """The rows of a training log for steps 1..up_to_step; [] when there is no log (a checkpoint
    made before logs were kept)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [row for row in rows if isinstance(row.get("step"), int) and row["step"] <= up_to_step]


def capture_rng() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
