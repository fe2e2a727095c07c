"""Checkpoints in the artifact store: jobs/{job_id}/checkpoints/step-{n}/.

A checkpoint folder holds the PEFT adapter (`adapter/`), `trainer_state.pt` (optimizer, scheduler,
RNG states, data position, counters) and, written last, `checkpoint.json`. A folder without
`checkpoint.json` is a checkpoint whose upload was cut off (a killed process) and is ignored: the
newest complete one is what `resume` continues from.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from services.common.errors import FailedPrecondition
from services.common.storage import FOLDER_MEDIA_TYPE, ArtifactStore, StoredObject
from services.common.storage.base import folder_digest

MANIFEST = "checkpoint.json"
STATE_FILE = "trainer_state.pt"
ADAPTER_DIR = "adapter"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d+)/" + re.escape(MANIFEST) + "$")


def checkpoints_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoints/"


def checkpoint_prefix(job_id: str, step: int) -> str:
    return f"{checkpoints_prefix(job_id)}step-{step}/"


def adapter_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/adapter/"


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
