"""Generation: the teacher called n_samples times per prompt, candidates streamed as they finish.

`plan(request, ...)` checks a GenerateRequest (dataset lines, teacher spec, limits) before any
teacher call; `Generation(plan, client, store).events()` runs it and yields GenerateResponse
events: progress, one CandidateGroup per prompt as soon as its samples are done, and a summary
with the candidates artifact (`jobs/{job_id}/candidates/candidates.jsonl`, one CandidateGroup per
line in dataset order, protobuf JSON).
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
from services.common.providers import Limits, Message, ModelClient, ModelConfig, SamplingParams
from services.common.specs import generate
from services.common.specs.layout import JobKeys
from services.common.storage import ArtifactStore
from services.common.storage.spool import LineSpool

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class GenerationPlan:
    job_id: str
    prompts: Sequence[common_pb2.Prompt]
    teacher: ModelConfig
    n_samples: int
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
    teacher_spec = request.teacher
    if cache_dir is not None and teacher_spec.provider == common_pb2.PROVIDER_LOCAL \
            and teacher_spec.model.startswith(store.base_uri):
        teacher_spec = local_artifact_model(teacher_spec, store, cache_dir)
    spec = generate.generate_spec(request, teacher_spec=teacher_spec,
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
    return GenerationPlan(spec.job_id, prompts, spec.teacher, spec.n_samples, spec.system_prompt,
                          spec.limits)


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
        client: ModelClient,
        store: ArtifactStore,
        *,
        progress_interval: float = 1.0,
    ) -> None:
        self.plan = plan
        self.client = client
        self.store = store
        self.progress_interval = progress_interval
        self.params = SamplingParams(
            plan.teacher.temperature, plan.teacher.max_tokens, plan.teacher.top_p
        )
        self.done = 0

    async def events(self) -> AsyncIterator[generator_pb2.GenerateResponse]:
        total = len(self.plan.prompts)
        log.info("generation started", extra={
            "job_id": self.plan.job_id, "prompts": total, "n_samples": self.plan.n_samples,
            "provider": self.plan.teacher.provider, "model": self.plan.teacher.model,
        })
        yield self._progress()
        last_progress = time.monotonic()
        # Twice as many prompts in flight as provider calls may be (the limiter holds that
        # bound): while some read or write the teacher cache, the others keep every call slot
        # busy, so cache I/O does not eat into the provider's concurrency.
        groups = completions(enumerate(self.plan.prompts), self._group_at,
                             limit=2 * self.plan.limits.max_concurrency)
        # The lines go to disk as groups finish, stored in dataset order at the end.
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
        yield self._progress()
        log.info("generation finished", extra={
            "job_id": self.plan.job_id, "requests": self.client.stats.requests,
            "cached": self.client.stats.cached_requests,
            "cost_usd": round(self.client.stats.cost_usd, 6),
        })
        yield generator_pb2.GenerateResponse(summary=generator_pb2.GenerateSummary(
            candidates=ref.as_proto(), usage=self._usage(), prompts=total,
            candidate_count=total * self.plan.n_samples,
        ))

    async def _group_at(self, item: tuple[int, common_pb2.Prompt], emit: Emit) -> None:
        position, prompt = item
        emit((position, await self._group(prompt)))

    async def _group(self, prompt: common_pb2.Prompt) -> common_pb2.CandidateGroup:
        messages = prompt_messages(prompt, self.plan.system_prompt)
        samples = await self.client.samples(messages, range(self.plan.n_samples), self.params)
        group = common_pb2.CandidateGroup(prompt=prompt)
        for sample in samples:
            group.candidates.add(
                prompt_id=prompt.id,
                sample_index=sample.index,
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
                original_cost_usd=sample.original_cost_usd,
            )
        return group

    def _usage(self) -> common_pb2.Usage:
        stats = self.client.stats
        return common_pb2.Usage(
            requests=stats.requests + stats.cached_requests,
            cached_requests=stats.cached_requests,
            input_tokens=stats.input_tokens,
            output_tokens=stats.output_tokens,
            cost_usd=stats.cost_usd,
        )

    def _progress(self) -> generator_pb2.GenerateResponse:
        return generator_pb2.GenerateResponse(progress=generator_pb2.GenerateProgress(
            prompts_done=self.done,
            prompts_total=len(self.plan.prompts),
            usage=self._usage(),
            retries=self.client.stats.retries,
            rate_limited=self.client.stats.rate_limited,
        ))


def _jsonl_line(group: common_pb2.CandidateGroup) -> bytes:
    body = json_format.MessageToDict(group, preserving_proto_field_name=True)
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
