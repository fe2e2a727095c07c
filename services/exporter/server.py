"""gRPC servicer of the exporter service: thin, the logic lives in plain modules beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from distill.v1 import common_pb2, exporter_pb2, exporter_pb2_grpc
from services.common.metrics import ExporterMetrics
from services.common.server import Service
from services.common.specs.export import QUANT_ENUMS, export_job
from services.exporter import pipeline, smoke
from services.exporter.settings import ExporterSettings


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
        job = export_job(request)
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
