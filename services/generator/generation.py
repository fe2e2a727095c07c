"""Generation: the teacher called n_samples times per prompt, candidates streamed as they finish.

`plan(request, ...)` checks a GenerateRequest (dataset lines, teachers, limits) before any
teacher call; `Generation(plan, clients, store).events()` (a client per committee member) runs
it and yields GenerateResponse events: progress, one CandidateGroup per prompt as soon as all
its samples are done, and a summary with the candidates artifact
(`jobs/{job_id}/candidates/candidates.jsonl`, one CandidateGroup per line in dataset order,
protobuf JSON). Each run also stores the teacher-cache keys it used
(`jobs/{job_id}/teacher-cache-keys/`, `services/common/teacher_cache_keys.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format

from distill.v1 import common_pb2, generator_pb2
from services.common import datasets, errors
from services.common.completions import Emit, completions
from services.common.providers import (
    Limits,
    Message,
    ModelClient,
    Sample,
    SamplingParams,
)
from services.common.specs import generate, names
from services.common.specs.layout import JobKeys
from services.common.specs.members import Member, WithCommittee
from services.common.storage import ArtifactStore
from services.common.storage.spool import LineSpool
from services.common.teacher_cache_keys import KeyLog

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class GenerationPlan(WithCommittee):
    job_id: str
    run_id: str  # names the run's cache-key manifest and the calls it pays for
    prompts: Sequence[common_pb2.Prompt]
    committee: tuple[Member, ...]  # one member for a request with a single teacher
    system_prompt: str
    limits: Limits

    @property
    def candidates_key(self) -> str:
        return JobKeys(self.job_id).candidates


def plan(
    request: generator_pb2.GenerateRequest,
    store: ArtifactStore,
    *,
    default_concurrency: int = generate.DEFAULT_MAX_CONCURRENCY,
    max_concurrency: int = generate.MAX_CONCURRENCY,
    price_overrides=None,
    max_dataset_bytes: int = datasets.DEFAULT_MAX_BYTES,
    cache_dir: Path | None = None,
) -> GenerationPlan:
    """Validates everything a run needs; raises the InvalidArgument/NotFound the caller sees.
    Blocking (reads the dataset): async callers use asyncio.to_thread."""
    teacher_specs = [m.teacher for m in request.committee] or [request.teacher]
    if cache_dir is not None:
        teacher_specs = [local_artifact_model(t, store, cache_dir)
                         if t.provider == common_pb2.PROVIDER_LOCAL
                         and t.model.startswith(store.base_uri) else t for t in teacher_specs]
    spec = generate.generate_spec(request, teacher_specs=teacher_specs,
                                  default_concurrency=default_concurrency,
                                  max_concurrency=max_concurrency, price_overrides=price_overrides)
    source = request.WhichOneof("source")
    if source == "dataset":
        prompts = datasets.load_dataset(
            store, request.dataset, max_bytes=max_dataset_bytes, what="dataset"
        )
    elif source == "prompts":
        prompts = datasets.validate_prompts(request.prompts.prompts, what="prompts.prompts")
    else:
        raise errors.InvalidArgument("source: set dataset (an ArtifactRef) or prompts")
    return GenerationPlan(spec.job_id, names.job_id(request.run_id, "run_id", optional=True),
                          prompts, spec.committee, spec.system_prompt, spec.limits)


def local_artifact_model(spec: common_pb2.ModelSpec, store: ArtifactStore,
                         cache_dir: Path) -> common_pb2.ModelSpec:
    """A PROVIDER_LOCAL spec whose model is a GGUF artifact (an exported student), with the
    model replaced by a local copy named by its sha256: downloaded once, and the teacher-cache
    key (which holds the path) changes whenever the weights do."""
    key = store.key_from_uri(spec.model)
    if not key.endswith(".gguf"):
        raise errors.InvalidArgument(f"teacher.model: {spec.model!r} is not a .gguf artifact")
    try:
        ref = store.stat(key)
    except errors.NotFound:
        raise errors.NotFound(f"teacher.model: no artifact at {spec.model!r}") from None
    path = cache_dir / "gguf" / f"{ref.sha256}.gguf"
    if not path.is_file():
        store.get_file(key, path)
    local = common_pb2.ModelSpec()
    local.CopyFrom(spec)
    local.model = str(path)
    return local


def prompt_messages(prompt: common_pb2.Prompt, system_prompt: str) -> tuple[Message, ...]:
    """The conversation sent to the teacher; `system_prompt` goes first unless one is there."""
    messages = [Message(datasets.ROLE_NAMES[m.role], m.content) for m in prompt.messages]
    if system_prompt and not any(m.role == "system" for m in messages):
        messages.insert(0, Message("system", system_prompt))
    return tuple(messages)


class Generation:
    def __init__(
        self,
        plan: GenerationPlan,
        clients: Sequence[ModelClient],
        store: ArtifactStore,
        *,
        progress_interval: float = 1.0,
        used: KeyLog | None = None,
    ) -> None:
        """`clients`: one per committee member, in order; `used`, the log their caches tell
        the keys they use, stored as the run's manifest of cache keys."""
        self.plan = plan
        self.clients = tuple(clients)
        self.store = store
        self.progress_interval = progress_interval
        self.used = used
        self.params = [SamplingParams(m.teacher.temperature, m.teacher.max_tokens,
                                      m.teacher.top_p) for m in plan.committee]
        self.done = 0

    async def events(self) -> AsyncIterator[generator_pb2.GenerateResponse]:
        total = len(self.plan.prompts)
        log.info("generation started", extra={
            "job_id": self.plan.job_id, "prompts": total, "n_samples": self.plan.n_samples,
            "provider": self.plan.teacher.provider, "model": self.plan.teacher.model,
            "committee": len(self.plan.committee),
        })
        yield self._progress()
        last_progress = time.monotonic()
        # Twice as many prompts in flight as provider calls may be (the limiter holds that
        # bound): while some read or write the teacher cache, the others keep every call slot
        # busy, so cache I/O does not eat into the provider's concurrency.
        groups = completions(enumerate(self.plan.prompts), self._group_at,
                             limit=2 * self.plan.limits.max_concurrency)
        # The lines go to disk as groups finish, stored in dataset order at the end.
        manifest = JobKeys(self.plan.job_id).cache_manifest(self.plan.run_id)
        try:
            with LineSpool() as spool:
                async with contextlib.aclosing(groups):
                    async for position, group in groups:
                        self.done += 1
                        spool.add(position, _jsonl_line(group))
                        yield generator_pb2.GenerateResponse(group=group)
                        if time.monotonic() - last_progress >= self.progress_interval:
                            last_progress = time.monotonic()
                            yield self._progress()
                ref = await asyncio.to_thread(spool.store, self.store, self.plan.candidates_key)
            # Before the summary: the job the run is for may end, and be deleted, right after.
            await self._store_manifest(manifest)
        except BaseException:  # failed or cancelled: what it used so far is the job's as well
            await asyncio.shield(self._store_manifest(manifest))
            raise
        yield self._progress()
        usage = self._usage()
        log.info("generation finished", extra={
            "job_id": self.plan.job_id, "requests": usage.requests - usage.cached_requests,
            "cached": usage.cached_requests, "cost_usd": round(usage.cost_usd, 6),
        })
        yield generator_pb2.GenerateResponse(summary=generator_pb2.GenerateSummary(
            candidates=ref.as_proto(), usage=usage, prompts=total,
            candidate_count=total * self.plan.n_samples,
        ))

    async def _group_at(self, item: tuple[int, common_pb2.Prompt], emit: Emit) -> None:
        position, prompt = item
        emit((position, await self._group(prompt)))

    async def _group(self, prompt: common_pb2.Prompt) -> common_pb2.CandidateGroup:
        messages = prompt_messages(prompt, self.plan.system_prompt)
        # Every member at once; each asks its own teacher (and cache) for its own indices.
        answers = await asyncio.gather(*(
            client.samples(messages, range(member.n_samples), params,
                           run_id=self.plan.run_id, prompt_id=prompt.id)
            for member, client, params in zip(self.plan.committee, self.clients, self.params,
                                              strict=True)))
        group = common_pb2.CandidateGroup(prompt=prompt)
        for member, samples in zip(self.plan.committee, answers, strict=True):
            for sample in samples:
                _add_candidate(group, prompt.id, member, sample)
        return group

    async def _store_manifest(self, key: str) -> None:
        """The run's cache keys, for the gateway's deletion of the job
        (`services/gateway/cache_release.py`); a run that used none writes none. A store that
        fails here costs only the cleanup: the entries then go by their TTL."""
        if self.used is None or not self.used.count:
            return
        try:
            await asyncio.to_thread(self.used.store, self.store, key)
        except errors.DistillError as exc:
            log.warning("could not store the run's teacher-cache keys", extra={
                "job_id": self.plan.job_id, "error": str(exc)})

    def _usage(self) -> common_pb2.Usage:
        stats = [client.stats for client in self.clients]
        return common_pb2.Usage(
            requests=sum(s.requests + s.cached_requests for s in stats),
            cached_requests=sum(s.cached_requests for s in stats),
            input_tokens=sum(s.input_tokens for s in stats),
            output_tokens=sum(s.output_tokens for s in stats),
            cost_usd=sum(s.cost_usd for s in stats),
        )

    def _progress(self) -> generator_pb2.GenerateResponse:
        return generator_pb2.GenerateResponse(progress=generator_pb2.GenerateProgress(
            prompts_done=self.done,
            prompts_total=len(self.plan.prompts),
            usage=self._usage(),
            retries=sum(c.stats.retries for c in self.clients),
            rate_limited=sum(c.stats.rate_limited for c in self.clients),
        ))


def _add_candidate(group: common_pb2.CandidateGroup, prompt_id: str, member: Member,
                   sample: Sample) -> None:
    group.candidates.add(
        prompt_id=prompt_id,
        sample_index=member.first_index + sample.index,
        teacher=member.label,
        text=sample.text,
        finish_reason=sample.finish_reason,
        usage=common_pb2.Usage(
            requests=sample.requests,
            cached_requests=1 if sample.cached else 0,
            input_tokens=sample.input_tokens,
            output_tokens=sample.output_tokens,
            cost_usd=sample.cost_usd,
        ),
        cached=sample.cached,
        latency_seconds=sample.latency_seconds,
        original_cost_usd=sample.paid.cost_usd,
        paid=sample.paid.to_proto(),
    )


def _jsonl_line(group: common_pb2.CandidateGroup) -> bytes:
    body = json_format.MessageToDict(group, preserving_proto_field_name=True)
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
