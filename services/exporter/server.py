"""gRPC servicer of the exporter service: thin, the logic lives in plain modules beside it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from distill.v1 import common_pb2, exporter_pb2, exporter_pb2_grpc
from services.common.errors import InvalidArgument
from services.common.metrics import ExporterMetrics
from services.common.server import Service
from services.exporter import pipeline, smoke
from services.exporter.settings import ExporterSettings

QUANT_NAMES = {
    common_pb2.QUANTIZATION_TYPE_F16: "f16",
    common_pb2.QUANTIZATION_TYPE_Q8_0: "q8_0",
    common_pb2.QUANTIZATION_TYPE_Q6_K: "q6_k",
    common_pb2.QUANTIZATION_TYPE_Q5_K_M: "q5_k_m",
    common_pb2.QUANTIZATION_TYPE_Q4_K_M: "q4_k_m",
    common_pb2.QUANTIZATION_TYPE_Q4_0: "q4_0",
}
QUANT_ENUMS = {name: value for value, name in QUANT_NAMES.items()}
ROLE_NAMES = {common_pb2.ROLE_SYSTEM: "system", common_pb2.ROLE_USER: "user",
              common_pb2.ROLE_ASSISTANT: "assistant"}
MAX_SMOKE_TOKENS = 4096
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def job_from_request(request: exporter_pb2.ExportRequest) -> pipeline.ExportJob:
    """Checks the request and turns it into a plain ExportJob (InvalidArgument names the field)."""
    if not _JOB_ID.match(request.job_id):
        raise InvalidArgument(
            f"job_id: {request.job_id!r} must be 1-128 letters, digits, '.', '_' or '-'"
        )
    if not request.adapter.uri:
        raise InvalidArgument("adapter.uri: required (the PEFT adapter folder in the store)")
    if not request.base_model.strip():
        raise InvalidArgument("base_model: required (the student the adapter was trained on)")
    s = request.settings
    quants: list[str] = []
    for value in s.quantizations:
        if value not in QUANT_NAMES:
            allowed = ", ".join(common_pb2.QuantizationType.Name(v) for v in QUANT_NAMES)
            raise InvalidArgument(
                f"settings.quantizations: {value} is not a quantization; allowed: {allowed}"
            )
        if QUANT_NAMES[value] not in quants:
            quants.append(QUANT_NAMES[value])
    max_tokens = s.smoke_max_tokens if s.HasField("smoke_max_tokens") else 64
    if not 1 <= max_tokens <= MAX_SMOKE_TOKENS:
        raise InvalidArgument(
            f"settings.smoke_max_tokens: must be 1..{MAX_SMOKE_TOKENS}, got {max_tokens}"
        )
    return pipeline.ExportJob(
        job_id=request.job_id,
        adapter_uri=request.adapter.uri,
        adapter_sha256=request.adapter.sha256,
        base_model=request.base_model.strip(),
        quantizations=tuple(quants) or pipeline.DEFAULT_QUANTIZATIONS,
        merged_model=s.merged_model if s.HasField("merged_model") else True,
        lora_gguf=s.lora_gguf,
        include_base=request.include_base,
        ollama_modelfile=s.ollama_modelfile if s.HasField("ollama_modelfile") else True,
        smoke_max_tokens=max_tokens,
        smoke_messages=tuple(_smoke_messages(request.smoke_prompts)),
    )


def _smoke_messages(prompts: Sequence[common_pb2.Prompt]) -> list[dict[str, str]]:
    """The first prompt with a user turn, without its reference answer; else a greeting."""
    for i, prompt in enumerate(prompts):
        messages = []
        for j, m in enumerate(prompt.messages):
            if m.role not in ROLE_NAMES:
                raise InvalidArgument(f"smoke_prompts[{i}].messages[{j}].role: unspecified")
            messages.append({"role": ROLE_NAMES[m.role], "content": m.content})
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()  # the reference answer: the model is to write it
        if any(m["role"] == "user" for m in messages):
            return messages
    return list(smoke.DEFAULT_PROMPT)


def _smoke(result: smoke.SmokeResult) -> exporter_pb2.SmokeTest:
    return exporter_pb2.SmokeTest(
        passed=result.passed, prompt=result.prompt, answer=result.answer, tokens=result.tokens,
        stopped_at_eos=result.stopped_at_eos, failure=result.failure,
    )


def to_response(event: pipeline.Progress | pipeline.ExportResult) -> exporter_pb2.ExportResponse:
    if isinstance(event, pipeline.Progress):
        return exporter_pb2.ExportResponse(progress=exporter_pb2.ExportProgress(
            stage=int(event.stage), detail=event.detail,
            progress=common_pb2.Progress(done=event.done, total=event.total, unit=event.unit,
                                         message=event.detail),
        ))
    files = [
        exporter_pb2.ExportedFile(
            output=int(f.output),
            quantization=QUANT_ENUMS.get(f.quantization or "", 0),
            artifact=f.ref.as_proto(),
            smoke_test=_smoke(f.smoke_test) if f.smoke_test else None,
        )
        for f in event.files
    ]
    return exporter_pb2.ExportResponse(manifest=exporter_pb2.ExportManifest(
        files=files, complete=event.complete,
        failed_stage=int(event.failed_stage or 0), failure=event.failure,
        manifest=event.manifest.as_proto() if event.manifest else None,
    ))


class ExporterService(exporter_pb2_grpc.ExporterServiceServicer):
    def __init__(self, exporter: pipeline.Exporter, metrics: ExporterMetrics | None = None
                 ) -> None:
        self._exporter = exporter
        self.metrics = metrics or ExporterMetrics()

    async def Export(  # noqa: N802 - gRPC method name
        self, request: exporter_pb2.ExportRequest, context
    ) -> AsyncIterator[exporter_pb2.ExportResponse]:
        job = job_from_request(request)
        timer = self.metrics.stream()
        try:
            async for event in self._exporter.export(job):
                response = to_response(event)
                timer.observe(response)
                yield response
        except Exception:
            timer.failed()
            raise


def build(settings: ExporterSettings) -> Sequence[Service]:
    exporter = pipeline.Exporter(settings, settings.open_store())
    servicer = ExporterService(exporter)
    return [Service.of(exporter_pb2, exporter_pb2_grpc, servicer,
                       metrics=servicer.metrics.registry)]
