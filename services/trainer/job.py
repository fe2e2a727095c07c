"""One training, end to end: checks, data, model, loop, adapter upload. Blocking; the servicer
runs it in a worker thread. Every check that can fail cheaply runs before the model is loaded:

request fields (services/common/specs/train.py) → student resolution → backend selection →
memory preflight → dataset (ref, sha256, rows, tokenisation) → resume checkpoint → load →
train → adapter (with the training log, `training_log.jsonl`: one JSON line per step,
continued across resumes).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path

from services.common import train_memory
from services.common.errors import Cancelled, InvalidArgument, NotFound
from services.common.models import resolve_student
from services.common.specs.layout import TRAINING_LOG
from services.common.specs.train import TrainConfig
from services.common.storage import ArtifactStore
from services.trainer import checkpoints
from services.trainer.backends import backend_device_type, make_backend, resolve_backend_name
from services.trainer.data import Example, read_curated, tokenize_rows
from services.trainer.loop import Emit, Finished, Started, TrainingLoop, count_parameters
from services.trainer.settings import TrainerSettings

log = logging.getLogger("distill.trainer")


def load_examples(store: ArtifactStore, config: TrainConfig, tokenizer, work: Path
                  ) -> list[Example]:
    """The curated dataset, verified against its ref, parsed and tokenised."""
    key = store.key_from_uri(config.curated_uri)  # in the job's folder: Train checked it
    try:
        ref = store.stat(key)
    except NotFound as exc:
        raise InvalidArgument(f"curated.uri: no artifact at {config.curated_uri}") from exc
    if config.curated_sha256 and ref.sha256 != config.curated_sha256:
        raise InvalidArgument(
            f"curated.sha256: {config.curated_sha256} does not match the stored artifact "
            f"({ref.sha256})"
        )
    path = work / "curated.jsonl"
    store.get_file(key, path)
    with open(path, "rb") as lines:
        rows = read_curated(lines)
    return tokenize_rows(rows, tokenizer, config.max_seq_length)


def run_training(config: TrainConfig, settings: TrainerSettings, store: ArtifactStore,
                 emit: Emit, cancel: threading.Event) -> Finished:
    """Trains and uploads the adapter; emits Started, Step, Checkpoint and Finished events."""
    import torch
    from transformers import AutoTokenizer

    try:
        model_dir = resolve_student(config.student_model, settings.cache_dir)
    except NotFound as exc:
        raise InvalidArgument(f"student_model: {exc}") from exc
    backend_name = resolve_backend_name(config.backend or settings.default_backend)
    device_type = backend_device_type(backend_name)
    estimate = train_memory.check(model_dir, config, backend_name, device_type, settings.memory_gb,
                                  load_in_4bit=settings.unsloth_load_in_4bit,
                                  student=config.student_model)
    log.info("preflight", extra={"job_id": config.job_id, "required_gb": estimate.required_gb,
                                 "available_gb": estimate.available_gb})
    if estimate.lowered_from is not None:
        log.warning(
            f"batch_size {estimate.lowered_from} needs more than the "
            f"{estimate.available_gb:.1f} GB here: training with batch_size "
            f"{estimate.config.batch_size} and gradient_accumulation_steps "
            f"{estimate.config.gradient_accumulation_steps} (same effective batch, about "
            f"{estimate.required_gb:.1f} GB)", extra={"job_id": config.job_id})
        config = estimate.config

    if settings.work_dir is not None:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"train-{config.job_id}-", dir=settings.work_dir))
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        examples = load_examples(store, config, tokenizer, work)

        resume_dir = None
        resume_step = checkpoints.newest_step(store, config.job_id) if config.resume else None
        if resume_step is not None:
            resume_dir = work / "resume"
            checkpoints.download(store, config.job_id, resume_step, resume_dir)
        elif not config.resume:
            # A fresh run: old checkpoints of this job must never be taken for this run's.
            store.delete_prefix(checkpoints.checkpoints_prefix(config.job_id))
        if cancel.is_set():
            raise Cancelled("training cancelled before it started")

        torch.manual_seed(config.seed)
        backend = make_backend(backend_name, unsloth_load_in_4bit=settings.unsloth_load_in_4bit)
        loaded = backend.load(model_dir, config.lora, max_seq_length=config.max_seq_length,
                              seed=config.seed)
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id

        def save(step: int, folder: Path):
            ref = checkpoints.upload(store, config.job_id, step, folder,
                                     {"backend": backend_name, "job_id": config.job_id})
            shutil.rmtree(folder, ignore_errors=True)
            checkpoints.prune(store, config.job_id, settings.keep_checkpoints)
            return ref

        loop = TrainingLoop(loaded.model, examples, config, device=loaded.device, pad_id=pad_id,
                            emit=emit, cancel=cancel, save_checkpoint=save, work_dir=work)
        if resume_dir is not None:
            loop.load(resume_dir)
        total, trainable = count_parameters(loaded.model)
        emit(Started(backend=backend_name, device=str(loaded.device), total_parameters=total,
                     trainable_parameters=trainable, total_steps=loop.total_steps,
                     resumed_from_step=loop.step))
        steps = loop.run()

        adapter_dir = work / "adapter"
        loaded.model.save_pretrained(adapter_dir)
        loop.write_log(adapter_dir / TRAINING_LOG)
        prefix = checkpoints.adapter_prefix(config.job_id)
        store.delete_prefix(prefix)
        adapter = store.put_dir(prefix, adapter_dir)
        finished = Finished(adapter=adapter, steps=steps, final_loss=loop.last_loss,
                            train_seconds=loop.train_seconds, tokens=loop.tokens)
        emit(finished)
        return finished
    finally:
        shutil.rmtree(work, ignore_errors=True)

