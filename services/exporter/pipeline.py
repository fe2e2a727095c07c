"""One export, stage by stage, as a stream of progress events ending in a manifest.

    validate (nothing written) → ADAPTER → MERGE → CONVERT (f16) → QUANTIZE (each) → LORA_GGUF
    → MODELFILE, with a SMOKE_TEST of each GGUF right after it is made, then manifest.json.

Everything is built in a local scratch folder and uploaded to `jobs/{job_id}/` only once it is
complete. Bad input (a corrupt or pickled adapter, one that does not fit the base model, a base
model without a chat template, a missing converter) is found before the first upload, so such a
request fails with its status code and leaves nothing under the job's prefix. A failure after
that ends the export where it happened: the outputs made before it are still uploaded and
listed, and the manifest says `complete: false` with the stage and the reason. A GGUF whose
smoke test fails is listed with that result; the export goes on but is not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from services.common.errors import (
    DistillError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)
from services.common.models import resolve_student
from services.common.specs.export import ExportJob
from services.common.specs.layout import JobKeys
from services.common.storage import ArtifactStore, StoredObject
from services.exporter import gguf, merge, modelfile, safety, smoke
from services.exporter.settings import ExporterSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Which GGUF the Modelfile points at, best first (small and good enough, then larger).
MODELFILE_PREFERENCE = ("q4_k_m", "q5_k_m", "q6_k", "q8_0", "q4_0", "f16")
MANIFEST_VERSION = 1


class Stage(enum.IntEnum):
    """Mirrors distill.v1.ExportStage."""

    ADAPTER = 1
    MERGE = 2
    CONVERT = 3
    QUANTIZE = 4
    LORA_GGUF = 5
    MODELFILE = 6
    SMOKE_TEST = 7


class Output(enum.IntEnum):
    """Mirrors distill.v1.ExportOutput."""

    ADAPTER = 1
    MERGED_MODEL = 2
    GGUF = 3
    LORA_GGUF = 4
    MODELFILE = 5
    BASE_GGUF = 6


@dataclass(frozen=True)
class Progress:
    stage: Stage
    detail: str
    done: int = 0
    total: int = 0
    unit: str = ""


@dataclass(frozen=True)
class ExportedFile:
    output: Output
    ref: StoredObject
    quantization: str | None = None
    smoke_test: smoke.SmokeResult | None = None
    # For folders: relative path -> (sha256, size) of each file.
    files: dict[str, tuple[str, int]] | None = None


@dataclass
class ExportResult:
    files: list[ExportedFile] = field(default_factory=list)
    complete: bool = True
    failed_stage: Stage | None = None
    failure: str = ""
    manifest: StoredObject | None = None

    def fail(self, stage: Stage, reason: str) -> None:
        if self.complete:  # the first failure is the one reported
            self.complete, self.failed_stage, self.failure = False, stage, reason


class Exporter:
    """Runs exports against one artifact store; at most `max_concurrent_exports` at once."""

    def __init__(self, settings: ExporterSettings, store: ArtifactStore) -> None:
        self.settings = settings
        self.store = store
        self._active = 0

    async def export(self, job: ExportJob) -> AsyncIterator[Progress | ExportResult]:
        if self._active >= self.settings.max_concurrent_exports:
            raise ResourceExhausted(
                f"exporter busy: {self._active} of {self.settings.max_concurrent_exports} "
                "exports running; retry later"
            )
        self._active += 1
        work = Path(tempfile.mkdtemp(prefix=f"export-{job.job_id}-", dir=self.settings.work_dir))
        try:
            async for event in _Run(self, job, work).events():
                yield event
        finally:
            self._active -= 1
            await asyncio.to_thread(shutil.rmtree, work, True)


def _folder_files(folder: Path) -> dict[str, tuple[str, int]]:
    from services.common.storage.base import copy_hashing

    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as f:
            files[path.relative_to(folder).as_posix()] = copy_hashing(f)
    return files


class _Run:
    """The state of one export: scratch folder, inputs, what has been delivered so far."""

    def __init__(self, exporter: Exporter, job: ExportJob, work: Path) -> None:
        self.settings = exporter.settings
        self.store = exporter.store
        self.job = job
        self.work = work
        self.result = ExportResult()
        self.stage = Stage.ADAPTER
        self.tokenizer: Any = None
        self.chat: merge.ChatInfo | None = None
        self.adapter_ref: StoredObject | None = None
        self._base_f16: Path | None = None

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def events(self) -> AsyncIterator[Progress | ExportResult]:
        yield Progress(Stage.ADAPTER, "checking the adapter and the base model")
        adapter_key, adapter_dir, base_dir = await self._validate()
        converter = gguf.Converter.locate(self.settings.converter_dir)
        self.chat = await self._call(merge.chat_info, base_dir)

        # From here on the export writes; first remove what an earlier export of the job left.
        await self._call(self._clear_previous_outputs, adapter_key)
        try:
            async for event in self._stages(adapter_key, adapter_dir, base_dir, converter):
                yield event
        except Exception as exc:  # any stage failure is reported in the manifest, not raised
            log.warning("export stage failed", extra={"stage": self.stage.name},
                        exc_info=not isinstance(exc, (DistillError, gguf.ToolFailed)))
            self.result.fail(self.stage, str(exc) or type(exc).__name__)
        yield Progress(self.stage, "writing manifest.json")
        self.result.manifest = await self._call(self._write_manifest)
        yield self.result

    # --- validation: reads only; every failure here leaves the store untouched ---------------

    async def _validate(self) -> tuple[str, Path, Path]:
        job = self.job
        adapter_key = JobKeys(job.job_id).key_of(self.store, job.adapter_uri, "adapter.uri")
        if not adapter_key.endswith("/"):
            raise InvalidArgument(
                f"adapter: {job.adapter_uri!r} is a file; expected a folder ref (its uri ends "
                "in '/') holding adapter_config.json and adapter_model.safetensors"
            )
        adapter_dir = self.work / "adapter"
        await self._call(self._download, adapter_key, adapter_dir)
        base_dir = await self._call(resolve_student, job.base_model, self.settings.cache_dir)
        await self._call(safety.refuse_pickles, base_dir, f"base model {job.base_model!r}")
        if not any(base_dir.glob("*.safetensors")):
            raise InvalidArgument(f"base model {job.base_model!r} has no safetensors weights")
        await self._call(merge.validate_adapter, adapter_dir, base_dir)
        return adapter_key, adapter_dir, base_dir

    def _download(self, key: str, dest: Path) -> None:
        if not any(True for _ in self.store.list(key)):
            raise InvalidArgument(f"adapter: nothing stored under {self.job.adapter_uri!r}")
        self.adapter_ref = self.store.get_dir(
            key, dest, expected_sha256=self.job.adapter_sha256 or None
        )

    def _clear_previous_outputs(self, adapter_key: str) -> None:
        keys = JobKeys(self.job.job_id)
        for folder in (keys.adapter, keys.merged, keys.gguf):
            if folder != adapter_key:  # never the input itself
                self.store.delete_prefix(folder)
        for key in (keys.modelfile, keys.export_manifest):
            self.store.delete(key)

    # --- the stages ---------------------------------------------------------------------------

    async def _stages(self, adapter_key: str, adapter_dir: Path, base_dir: Path,
                      converter: gguf.Converter) -> AsyncIterator[Progress]:
        job, settings = self.job, self.settings
        keys = JobKeys(job.job_id)

        self.stage = Stage.ADAPTER
        yield Progress(Stage.ADAPTER, f"uploading the adapter to {keys.adapter}")
        if adapter_key == keys.adapter:  # the trainer's output: already in place
            ref = self.adapter_ref
        else:
            ref = await self._call(self.store.put_dir, keys.adapter, adapter_dir)
        self._deliver(ExportedFile(Output.ADAPTER, ref, files=_folder_files(adapter_dir)))

        self.stage = Stage.MERGE
        yield Progress(Stage.MERGE, "merging the adapter into the base model")
        merged_dir = self.work / "merged" / f"distill-{job.job_id}"
        await self._call(merge.merge_adapter, base_dir, adapter_dir, merged_dir,
                         self.chat.end_of_turn)
        self.tokenizer = await self._call(merge.load_tokenizer, merged_dir)
        if job.merged_model:
            yield Progress(Stage.MERGE, f"uploading the merged model to {keys.merged}")
            ref = await self._call(self.store.put_dir, keys.merged, merged_dir)
            self._deliver(ExportedFile(Output.MERGED_MODEL, ref,
                                       files=_folder_files(merged_dir)))

        ggufs = self.work / "gguf"
        ggufs.mkdir()
        quants = ("f16", *(q for q in job.quantizations if q != "f16"))
        self.stage = Stage.CONVERT
        yield Progress(Stage.CONVERT, "converting to GGUF (f16) with llama.cpp's converter",
                       0, len(quants), "files")
        f16 = await gguf.convert_hf(converter, merged_dir, ggufs / "f16.gguf",
                                    timeout=settings.convert_timeout_seconds,
                                    model_name=f"distill-{job.job_id}")
        async for event in self._smoke_and_deliver(f16, "f16", Output.GGUF):
            yield event

        if len(quants) > 1:
            self.stage = Stage.QUANTIZE
            yield Progress(Stage.QUANTIZE, f"quantizing to {', '.join(quants[1:])}", 1,
                           len(quants), "files")
            outputs = {q: ggufs / f"{q}.gguf" for q in quants[1:]}
            done = 1
            quantized = gguf.quantize(f16, outputs, timeout=settings.quantize_timeout_seconds,
                                      threads=settings.threads)
            async with contextlib.aclosing(quantized):  # a failure below kills the child
                async for quant, out in quantized:
                    done += 1
                    yield Progress(Stage.QUANTIZE, f"quantized {quant}", done, len(quants),
                                   "files")
                    # The child quantizes the next type meanwhile.
                    async for event in self._smoke_and_deliver(out, quant, Output.GGUF):
                        yield event
                    self.stage = Stage.QUANTIZE

        if job.lora_gguf:
            self.stage = Stage.LORA_GGUF
            yield Progress(Stage.LORA_GGUF, "converting the adapter to a LoRA GGUF")
            lora = await gguf.convert_lora(converter, adapter_dir, base_dir,
                                           ggufs / "lora-f16.gguf",
                                           timeout=settings.convert_timeout_seconds)
            # Its smoke test runs it on the base model, converted here for that only.
            yield Progress(Stage.LORA_GGUF, "converting the base model for the LoRA smoke test")
            base_gguf = await self._base_gguf(base_dir, merged_dir)
            async for event in self._smoke_and_deliver(lora, None, Output.LORA_GGUF,
                                                       run_on=base_gguf):
                yield event

        if job.include_base:
            async for event in self._export_base(base_dir, merged_dir):
                yield event

        if job.ollama_modelfile:
            self.stage = Stage.MODELFILE
            target = self._modelfile_target()
            yield Progress(Stage.MODELFILE, f"writing the Ollama Modelfile (FROM {target})")
            if self.chat.fmt is None:
                raise FailedPrecondition(f"no Ollama Modelfile: {self.chat.problem}")
            config = json.loads((merged_dir / "config.json").read_text(encoding="utf-8"))
            text = modelfile.build(
                self.chat.fmt, target,
                context_length=int(config.get("max_position_embeddings") or 2048),
                eos_tokens=[self.tokenizer.eos_token] if self.tokenizer.eos_token else [],
                bos_token=self.tokenizer.bos_token,
            )
            ref = await self._call(self.store.put_bytes, keys.modelfile, text.encode(),
                                   media_type="text/plain")
            self._deliver(ExportedFile(Output.MODELFILE, ref))

    async def _base_gguf(self, base_dir: Path, merged_dir: Path) -> Path:
        """The untrained base model as an f16 GGUF (converted once per export)."""
        if self._base_f16 is None:
            base_view = await self._call(self._base_view, base_dir, merged_dir)
            self._base_f16 = await gguf.convert_hf(
                gguf.Converter.locate(self.settings.converter_dir), base_view,
                self.work / "base-f16.gguf", timeout=self.settings.convert_timeout_seconds,
                model_name=f"distill-{self.job.job_id}-base")
        return self._base_f16

    def _base_cache_key(self, base_dir: Path, quant: str) -> str:
        """Where the base GGUF of this base model and quantization is kept across jobs: keyed
        by the model's weight files (name and size) and config, so changed weights miss."""
        digest = hashlib.sha256(f"v{MANIFEST_VERSION}|{quant}".encode())
        for path in sorted(base_dir.iterdir()):
            if path.suffix == ".safetensors" or path.name == "config.json":
                digest.update(f"|{path.name}:{path.stat().st_size}".encode())
        digest.update((base_dir / "config.json").read_bytes())
        return f"models/base/{digest.hexdigest()}/{quant}.gguf"

    async def _export_base(self, base_dir: Path, merged_dir: Path) -> AsyncIterator[Progress]:
        """The untrained base at the job's first quantization; reused from the store when an
        earlier job of the same base model made it."""
        quant = next((q for q in self.job.quantizations if q != "f16"), "f16")
        key = await self._call(self._base_cache_key, base_dir, quant)
        if await self._call(self.store.exists, key):
            yield Progress(self.stage, f"base model {quant}: reusing {key}")
            ref = await self._call(self.store.stat, key)
            self._deliver(ExportedFile(Output.BASE_GGUF, ref, quantization=quant,
                                       smoke_test=None))  # smoke-tested when it was made
            return
        self.stage = Stage.CONVERT
        yield Progress(Stage.CONVERT, "converting the untrained base model (f16)")
        path = await self._base_gguf(base_dir, merged_dir)
        if quant != "f16":
            self.stage = Stage.QUANTIZE
            yield Progress(Stage.QUANTIZE, f"quantizing the untrained base model to {quant}")
            out = self.work / "base" / f"base-{quant}.gguf"
            quantized = gguf.quantize(path, {quant: out},
                                      timeout=self.settings.quantize_timeout_seconds,
                                      threads=self.settings.threads)
            async with contextlib.aclosing(quantized):
                async for _ in quantized:
                    pass
            path = out
        async for event in self._smoke_and_deliver(path, quant, Output.BASE_GGUF, key=key):
            yield event

    async def _smoke_and_deliver(self, path: Path, quant: str | None, output: Output,
                                 run_on: Path | None = None,
                                 key: str | None = None) -> AsyncIterator[Progress]:
        """Smoke-test a GGUF, then upload and list it with the verdict."""
        job = self.job
        messages = list(job.smoke_messages)
        text, ids = smoke.expected_prompt(self.tokenizer, messages)
        yield Progress(Stage.SMOKE_TEST, f"smoke-testing {path.name}: load, answer, stop")
        result = await smoke.smoke_test(
            smoke.SmokeRequest(
                model=str(run_on or path), lora=str(path) if run_on else None,
                messages=messages, max_tokens=job.smoke_max_tokens, expected_prompt=text,
                expected_ids=ids, end_of_turn=self.chat.end_of_turn,
                n_ctx=self.settings.smoke_context_tokens, threads=self.settings.threads,
            ),
            timeout=self.settings.smoke_timeout_seconds,
        )
        if not result.passed:
            self.result.fail(Stage.SMOKE_TEST, f"{path.name}: {result.failure}")
        key = key or JobKeys(job.job_id).gguf + path.name
        verdict = "passed" if result.passed else "FAILED"
        yield Progress(Stage.SMOKE_TEST, f"{path.name}: smoke test {verdict}; "
                       f"uploading to {key}")
        ref = await self._call(self.store.put_file, key, path)
        self._deliver(ExportedFile(output, ref, quantization=quant, smoke_test=result))

    def _base_view(self, base_dir: Path, merged_dir: Path) -> Path:
        """The base model's weights with the merged folder's (repaired) tokenizer files."""
        view = self.work / "base" / f"distill-{self.job.job_id}-base"
        view.mkdir(parents=True)
        for path in base_dir.iterdir():
            if path.is_file() and (path.suffix == ".safetensors" or path.name in (
                    "config.json", "model.safetensors.index.json")):
                (view / path.name).symlink_to(path.resolve())
        for path in merged_dir.iterdir():
            if path.is_file() and not (view / path.name).exists() \
                    and path.suffix != ".safetensors":
                shutil.copy2(path, view / path.name)
        return view

    def _modelfile_target(self) -> str:
        ggufs = {f.quantization: f for f in self.result.files if f.output == Output.GGUF}
        passed = [q for q in MODELFILE_PREFERENCE if q in ggufs and ggufs[q].smoke_test.passed]
        made = [q for q in MODELFILE_PREFERENCE if q in ggufs]
        choice = (passed or made or ["f16"])[0]
        return f"./gguf/{choice}.gguf"

    def _deliver(self, exported: ExportedFile) -> None:
        self.result.files.append(exported)

    # --- the manifest -------------------------------------------------------------------------

    def manifest_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "version": MANIFEST_VERSION,
            "job_id": self.job.job_id,
            "base_model": self.job.base_model,
            "complete": r.complete,
            "failed_stage": r.failed_stage.name.lower() if r.failed_stage else None,
            "failure": r.failure or None,
            "files": [
                {
                    "output": f.output.name.lower(),
                    "quantization": f.quantization,
                    **asdict(f.ref),
                    "smoke_test": asdict(f.smoke_test) if f.smoke_test else None,
                    "files": {k: {"sha256": v[0], "size_bytes": v[1]}
                              for k, v in f.files.items()} if f.files else None,
                }
                for f in r.files
            ],
        }

    def _write_manifest(self) -> StoredObject:
        data = json.dumps(self.manifest_json(), indent=2, sort_keys=True) + "\n"
        return self.store.put_bytes(JobKeys(self.job.job_id).export_manifest, data.encode("utf-8"),
                                    media_type="application/json")
