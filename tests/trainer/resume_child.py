"""Child process of the kill-and-resume test: trains jobs with the plain trainer code.

    python -m tests.trainer.resume_child --store DIR --model DIR --curated URI \
        --job J [--reference-job R] [--kill-after-step N] [--resume]

With --reference-job, first trains R uninterrupted. With --kill-after-step N, the process sends
itself SIGKILL right after step N (no cleanup of any kind, as when a node dies). Events go to
stdout as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from dataclasses import asdict
from pathlib import Path

from services.common.storage import LocalStore
from services.trainer.job import run_training
from services.trainer.loop import Event, Step
from services.trainer.settings import TrainerSettings
from tests.trainer.helpers import cache_dir, tiny_config

STEPS = 4
INTERVAL = 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--curated", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--reference-job")
    parser.add_argument("--kill-after-step", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    store = LocalStore(args.store)
    settings = TrainerSettings(store_url=f"file:{args.store}", cache_dir=cache_dir())
    curated = store.stat(store.key_from_uri(args.curated))

    def run(job: str, kill_after: int | None, resume: bool) -> None:
        def emit(event: Event) -> None:
            print(json.dumps({"type": type(event).__name__, **asdict(event)}, default=str),
                  flush=True)
            if isinstance(event, Step) and event.step == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        # Default LoRA dropout and the full BOND loss: RNG, optimizer and data order all matter.
        config = tiny_config(args.model, curated, job_id=job, max_steps=STEPS,
                             checkpoint_interval=INTERVAL, resume=resume, learning_rate=1e-3)
        run_training(config, settings, store, emit, threading.Event())

    if args.reference_job:
        run(args.reference_job, None, False)
    run(args.job, args.kill_after_step, args.resume)


if __name__ == "__main__":
    main()
