"""Helpers shared by the trainer tests (and the resume child process)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.common.specs.train import TrainConfig
from services.common.storage import ArtifactStore, StoredObject
from tests.fixtures.tiny_llama import shared_cache_dir


def curated_rows(n: int) -> list[dict[str, Any]]:
    """Curated rows as the judge writes them: a labelling task, the right label chosen."""
    rows = []
    for i in range(n):
        label = "even" if i % 2 == 0 else "odd"
        wrong = "odd" if label == "even" else "even"
        rows.append({
            "prompt": {"id": f"line-{i + 1}", "reference": label,
                       "messages": [{"role": "user", "content": f"Is {i} even or odd?"}]},
            "chosen": [{"text": label, "score": 10.0}],
            # every third prompt has no rejected candidate: SFT and KL only
            "rejected": [] if i % 3 == 0 else [{"text": f"It is {wrong}.", "score": 0.0}],
            "judge": {"extra": "fields are ignored"},
        })
    return rows


def put_curated(store: ArtifactStore, rows: Sequence[dict[str, Any] | str],
                key: str = "jobs/job-1/curated.jsonl") -> StoredObject:
    """Stored where the judge leaves a job's curated set (the trainer reads only its own
    job's), for job-1 unless `key` says otherwise."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    return store.put_bytes(key, ("\n".join(lines) + "\n").encode())


def tiny_config(model_dir: Path, curated: StoredObject, job_id: str = "job-1",
                **overrides: Any) -> TrainConfig:
    fields: dict[str, Any] = {
        "job_id": job_id, "student_model": str(model_dir), "curated_uri": curated.uri,
        "curated_sha256": curated.sha256, "max_steps": 3, "batch_size": 2,
        "max_seq_length": 48, "checkpoint_interval": 2, "backend": "trl",
    }
    fields.update(overrides)
    return TrainConfig(**fields)


def cache_dir() -> Path:
    return shared_cache_dir()
