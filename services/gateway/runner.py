"""Runs a job through its stages, resuming from the last finished one.

Every event updates the job (state, progress, usage and cost so far, stage outputs) through
its `Lifecycle`, which saves the row and pushes a snapshot to watchers. A stage's output ref is
recorded the moment the stage ends, so a restarted gateway continues from there; the teacher
cache and trainer checkpoints make even a half-done stage cheap to redo.
"""

from __future__ import annotations

import asyncio
import logging
import time

from distill.v1 import (
    common_pb2,
    exporter_pb2,
    gateway_pb2,
    generator_pb2,
    judge_pb2,
    trainer_pb2,
)
from services.common import errors
from services.common.datasets import Prompts, load_dataset
from services.common.specs.export import DEFAULT_QUANTIZATIONS, QUANT_ENUMS
from services.common.specs.names import job_id_of
from services.common.specs.routing import progressive
from services.common.spend import Spend
from services.common.storage import ArtifactStore
from services.gateway import evaluation, events, expansion, report, stages
from services.gateway.aliases import Aliases
from services.gateway.job_slots import JobSlots, job_owner
from services.gateway.lifecycle import Lifecycle
from services.gateway.rollouts import Rollouts

log = logging.getLogger("distill.gateway.runner")
# The progress message saved while a resumed job's dataset loads. A job that still shows it when
# a gateway starts stopped that gateway while loading (out of memory, most likely): it fails
# instead of being resumed into the same crash.
LOADING_DATASET = "loading the dataset"
DEFAULT_QUANT = QUANT_ENUMS[DEFAULT_QUANTIZATIONS[0]]


def job_id(job: gateway_pb2.Job) -> str:
    return job_id_of(job.name)


class JobRunner:
    def __init__(self, lifecycle: Lifecycle, clients: stages.StageClients,
                 artifacts: ArtifactStore, aliases: Aliases, trainer_wait_seconds: float,
                 serving_usd_per_hour: float = 0.0, slots: JobSlots | None = None) -> None:
        self.lifecycle = lifecycle
        # Running jobs per owner (no cap without one); the rest wait PENDING, in order.
        self.slots = slots or JobSlots(lambda owner: 1 << 30)
        self.clients = clients
        self.artifacts = artifacts
        self.aliases = aliases
        self.rollouts = Rollouts(aliases, artifacts)
        self.trainer_wait_seconds = trainer_wait_seconds
        self.serving_usd_per_hour = serving_usd_per_hour
        self.tasks: dict[str, asyncio.Task] = {}

    def start(self, job: gateway_pb2.Job,
              prompts: Prompts | None = None) -> None:
        """Runs the job once its owner has a free slot (calls in submission order start in that
        order); `prompts` is its dataset as preflight parsed it (a resumed job's is parsed
        again, once, if a stage still needs it)."""
        task = asyncio.create_task(self._run(job.name, prompts), name=job.name)
        self.tasks[job.name] = task
        task.add_done_callback(lambda _: self.tasks.pop(job.name, None))

    async def cancel(self, name: str) -> None:
        """Stops the job's runner (and so its stage streams); the lifecycle marked it first."""
        task = self.tasks.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def shutdown(self) -> None:
        """Stops every runner without marking jobs cancelled: a restart resumes them."""
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _run(self, name: str, prompts: Prompts | None) -> None:
        events.running(name)  # what the gateway logs from here on is about this job
        job = self.lifecycle.store.get_job(name)
        if job.progress.message == LOADING_DATASET:
            self.lifecycle.fail(job, errors.ResourceExhausted.code.name, (
                "spec.dataset: the gateway stopped while loading this job's dataset (out of "
                "memory?); the job is not resumed into the same crash: split the dataset or "
                "give the gateway more memory, then submit it again"))
            return
        dataset = _Dataset(self.artifacts, job, self.lifecycle, prompts)
        try:
            async with self.slots.of(job_owner(job)):  # PENDING until a slot frees
                await self._stages(job, dataset)
        except asyncio.CancelledError:
            # Cancelled by CancelJob, or by a gateway shutdown (then resumed by the next one).
            if self.lifecycle.cancelling(name):
                self.lifecycle.stopped(job)
            raise
        except errors.DistillError as exc:
            self.lifecycle.fail(job, exc.code.name, str(exc))
        except Exception as exc:
            log.exception("job %s failed", name)
            self.lifecycle.fail(job, "INTERNAL", f"internal error: {type(exc).__name__}")

    async def _stages(self, job: gateway_pb2.Job, dataset: _Dataset) -> None:
        if evaluation.enabled(job.spec) and not job.outputs.HasField("held_out"):
            await self._split(job, dataset)
        if expansion.enabled(job.spec) and not job.outputs.HasField("expanded_dataset"):
            await self._expand(job)
        if not job.outputs.HasField("curated"):
            await self._curate(job)
        if not job.outputs.HasField("adapter"):
            await self._train(job)
        if not job.outputs.HasField("export_manifest"):
            await self._export(job, dataset)
        if evaluation.enabled(job.spec) and not job.outputs.HasField("evaluation"):
            await self._evaluate(job)
        self._promote(job)
        await self._report(job)
        self.lifecycle.succeed(job)

    async def _report(self, job: gateway_pb2.Job) -> None:
        """The job's HTML report as an artifact. A report that cannot be drawn is logged and
        left out: it must not fail a job whose student is already exported and promoted."""
        job.progress.message = "writing the report"
        self.lifecycle.update(job)
        final = gateway_pb2.Job()
        final.CopyFrom(job)
        final.state = gateway_pb2.JOB_STATE_SUCCEEDED  # what the report describes
        try:
            job.outputs.report.CopyFrom(
                await asyncio.to_thread(report.build_report, final, self.artifacts))
        except Exception:
            log.exception("job %s: the report could not be written", job.name)

    # -- stages -------------------------------------------------------------------------------

    async def _split(self, job: gateway_pb2.Job, dataset: _Dataset) -> None:
        prompts = await dataset.prompts()
        train, held_out = await asyncio.to_thread(evaluation.split, self.artifacts, job_id(job),
                                                  job.spec, prompts)
        job.outputs.train_dataset.CopyFrom(train)
        job.outputs.held_out.CopyFrom(held_out)
        self.lifecycle.update(job)

    async def _expand(self, job: gateway_pb2.Job) -> None:
        self.lifecycle.enter(job, gateway_pb2.JOB_STATE_EXPANDING, "prompts",
                             "writing new prompts")
        train = job.outputs.train_dataset if job.outputs.HasField("train_dataset") \
            else job.spec.dataset
        seeds = await asyncio.to_thread(load_dataset, self.artifacts, train, what="dataset")
        held_out = await asyncio.to_thread(
            load_dataset, self.artifacts, job.outputs.held_out, what="spec.eval.held_out") \
            if job.outputs.HasField("held_out") else []

        async def on_progress(message: str, done: int, total: int) -> None:
            job.progress.message, job.progress.done, job.progress.total = message, done, total
            self.lifecycle.update(job)

        def charge(teacher: Spend, judge: Spend) -> None:
            self.lifecycle.charge(job, teacher=teacher, judge=judge)

        outcome = await expansion.expand(self.clients, job, seeds, held_out, on_progress, charge)
        job.expansion.CopyFrom(outcome.statistics)
        job.outputs.expanded_dataset.CopyFrom(await asyncio.to_thread(
            expansion.write, self.artifacts, job_id(job), train, outcome.prompts))
        self.lifecycle.update(job)

    async def _curate(self, job: gateway_pb2.Job) -> None:
        spec = job.spec
        self.lifecycle.enter(job, gateway_pb2.JOB_STATE_GENERATING, "prompts", "generating")
        started = time.monotonic()

        async def on_generate(progress: generator_pb2.GenerateProgress) -> None:
            done, total = progress.prompts_done, progress.prompts_total
            job.progress.done, job.progress.total = done, total
            if done:
                job.progress.eta_seconds = (time.monotonic() - started) / done * (total - done)
            if total and done == total:  # the judge finishes the last groups
                self.lifecycle.enter(job, gateway_pb2.JOB_STATE_JUDGING, "prompts",
                                     "judging the last groups", done=done, total=total)
            else:
                self.lifecycle.update(job)

        # Each prompt's group comes here once (the stage stream may be run again), with what
        # its calls cost the job.
        async def on_generated(group: common_pb2.CandidateGroup, spend: Spend) -> None:
            self.lifecycle.charge(job, teacher=spend)

        async def on_judged(group: judge_pb2.JudgedGroup, spend: Spend) -> None:
            self.lifecycle.charge(job, judge=spend)
            self.lifecycle.update(job)

        request = generator_pb2.GenerateRequest(
            dataset=_training_prompts(job), teacher=spec.teacher, n_samples=spec.n_samples,
            committee=spec.committee, system_prompt=spec.system_prompt, limits=spec.limits,
            job_id=job_id(job), project=job.project)
        config = type(spec.judge)()
        config.CopyFrom(spec.judge)
        config.job_id = job_id(job)
        config.project = job.project  # never the spec's: a job judges with its own cache
        result = await stages.generate_and_judge(self.clients, request, config, on_generate,
                                                 on_generated, on_judged)
        job.outputs.candidates.CopyFrom(result.candidates)
        job.outputs.curated.CopyFrom(result.curated)
        job.judge_statistics.CopyFrom(result.statistics)
        self.lifecycle.update(job)
        if result.statistics.prompts_kept == 0:
            raise errors.FailedPrecondition(
                f"the judge kept no prompt ({result.statistics.prompts_dropped} dropped under "
                "min_score): nothing to train on")

    async def _train(self, job: gateway_pb2.Job) -> None:
        spec = job.spec
        self.lifecycle.enter(job, gateway_pb2.JOB_STATE_TRAINING, "steps", "waiting for a trainer")
        request = trainer_pb2.TrainRequest(
            job_id=job_id(job), curated=job.outputs.curated, student_model=spec.student_model,
            lora=spec.lora, bond=spec.bond, training=spec.training, resume=True)

        async def on_event(event: trainer_pb2.TrainResponse) -> None:
            kind = event.WhichOneof("event")
            if kind == "started":
                job.progress.total = event.started.total_steps
                job.progress.done = event.started.resumed_from_step
                job.progress.message = f"training on {event.started.device} " \
                                       f"({event.started.backend})"
            elif kind == "step":
                job.progress.done, job.progress.total = event.step.step, event.step.total_steps
                job.progress.eta_seconds = event.step.eta_seconds
                job.train_loss = event.step.loss
            elif kind == "checkpoint":
                job.outputs.checkpoint.CopyFrom(event.checkpoint.checkpoint)
            self.lifecycle.update(job)

        def on_queue(message: str) -> None:  # placed on a replica, or back in the queue
            job.progress.message = message
            self.lifecycle.update(job)

        # The trainer pool's FIFO queue: a free replica, or the next one after a busy or lost one.
        finished = await stages.train(self.clients, request, on_event,
                                      wait_seconds=self.trainer_wait_seconds, on_queue=on_queue)
        job.outputs.adapter.CopyFrom(finished.adapter)
        job.train_loss = finished.final_loss
        self.lifecycle.update(job)

    async def _export(self, job: gateway_pb2.Job, dataset: _Dataset) -> None:
        spec = job.spec
        self.lifecycle.enter(job, gateway_pb2.JOB_STATE_EXPORTING, "stages", "exporting")
        request = exporter_pb2.ExportRequest(
            job_id=job_id(job), adapter=job.outputs.adapter, base_model=spec.student_model,
            settings=spec.export, smoke_prompts=(await dataset.prompts())[:1],
            include_base=evaluation.enabled(spec))

        async def on_progress(progress: exporter_pb2.ExportProgress) -> None:
            job.progress.message = f"{exporter_pb2.ExportStage.Name(progress.stage).lower()}: " \
                                   f"{progress.detail}"
            self.lifecycle.update(job)

        manifest = await stages.export(self.clients, request, on_progress)
        job.outputs.export_manifest.CopyFrom(manifest.manifest)
        wanted = list(spec.export.quantizations) or [DEFAULT_QUANT]
        ggufs = [f for f in manifest.files if f.output == exporter_pb2.EXPORT_OUTPUT_GGUF
                 and f.smoke_test.passed]
        ggufs.sort(key=lambda f: wanted.index(f.quantization) if f.quantization in wanted
                   else len(wanted))
        if ggufs:
            job.outputs.student_gguf.CopyFrom(ggufs[0].artifact)
        for f in manifest.files:
            if f.output == exporter_pb2.EXPORT_OUTPUT_BASE_GGUF:
                job.outputs.base_gguf.CopyFrom(f.artifact)
        self.lifecycle.update(job)
        if not manifest.complete:
            stage = exporter_pb2.ExportStage.Name(manifest.failed_stage)
            raise errors.FailedPrecondition(f"export failed at {stage}: {manifest.failure}")
        if not ggufs:
            raise errors.FailedPrecondition("export produced no GGUF that passed its smoke test")

    async def _evaluate(self, job: gateway_pb2.Job) -> None:
        self.lifecycle.enter(job, gateway_pb2.JOB_STATE_EVALUATING, "prompts", "evaluating")
        if not job.outputs.HasField("base_gguf"):
            raise errors.FailedPrecondition("evaluation: the export produced no base GGUF")

        async def on_progress(message: str, done: int, total: int) -> None:
            job.progress.message, job.progress.done, job.progress.total = message, done, total
            self.lifecycle.update(job)

        outcome = await evaluation.evaluate(self.clients, job, on_progress,
                                            serving_usd_per_hour=self.serving_usd_per_hour)
        job.evaluation.CopyFrom(outcome.evaluation)
        job.outputs.evaluation.CopyFrom(await asyncio.to_thread(
            evaluation.write_rows, self.artifacts, job_id(job), outcome.rows))
        try:
            self.lifecycle.charge(job, teacher=outcome.teacher_spend, judge=outcome.judge_spend)
        finally:
            self.lifecycle.update(job)

    def _promote(self, job: gateway_pb2.Job) -> None:
        name = job.spec.promote_alias
        if job.HasField("evaluation") and job.evaluation.prompts:
            warning = evaluation.teacher_warning(job.evaluation)
            if warning and warning not in job.warnings:
                job.warnings.append(warning)
            passed, reason = evaluation.gate(job.evaluation, evaluation.min_ratio(job.spec))
            job.evaluation.promotion_reason = reason if name else f"{reason} (no promote_alias)"
            if not passed:
                return
        if not name:
            return
        target = gateway_pb2.AliasTarget(job=job.name, gguf=job.outputs.student_gguf,
                                         description=job.spec.display_name)
        plan = progressive(job.spec.progressive)
        if plan is not None and (alias := self.rollouts.start(job, plan, target)) is not None:
            job.promoted_alias_version = alias.version
            job.evaluation.promotion_reason += f"; {alias.history[-1].target.description}"
            return
        for _ in range(3):  # compare-and-swap against concurrent changes
            try:
                current = self.aliases.get(name, job.project).version
            except errors.NotFound:
                current = 0
            try:  # within the job's project: never another project's alias of the same name
                alias = self.aliases.store.set_alias(name, target, current, job.project)
            except errors.Aborted:
                continue
            job.promoted_alias_version = alias.version
            job.evaluation.promoted = True
            return
        raise errors.Aborted(f"alias {name!r} kept changing; not promoted")


def _training_prompts(job: gateway_pb2.Job) -> common_pb2.ArtifactRef:
    """What generation answers: the expanded prompts, else the dataset less the held-out
    split, else the dataset."""
    for name in ("expanded_dataset", "train_dataset"):
        if job.outputs.HasField(name):
            return getattr(job.outputs, name)
    return job.spec.dataset


class _Dataset:
    """A job's dataset, parsed at most once per run: preflight's parse for a new job, else on
    first use (a resumed job), with LOADING_DATASET saved on the job meanwhile."""

    def __init__(self, store: ArtifactStore, job: gateway_pb2.Job, lifecycle: Lifecycle,
                 prompts: Prompts | None) -> None:
        self._store, self._job, self._lifecycle, self._prompts = store, job, lifecycle, prompts

    async def prompts(self) -> Prompts:
        if self._prompts is None:
            progress = self._job.progress.message
            self._set_progress(LOADING_DATASET)
            try:
                self._prompts = await asyncio.to_thread(load_dataset, self._store,
                                                        self._job.spec.dataset,
                                                        what="spec.dataset")
            finally:  # loaded, refused or stopped by a shutdown: not a crash
                self._set_progress(progress)
        return self._prompts

    def _set_progress(self, message: str) -> None:
        self._job.progress.message = message
        self._lifecycle.update(self._job)
