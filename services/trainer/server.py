"""gRPC servicer of the trainer service: thin, the logic lives in plain modules beside it.

Training blocks for minutes to hours, so it runs in a worker thread; its events cross to the
stream through `completions` (its `emit` is thread-safe). When the stream ends early (the
client cancels, the deadline passes, the server stops) the worker's cancel flag is set and
training stops before its next step, keeping the checkpoints already written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence

from distill.v1 import trainer_pb2, trainer_pb2_grpc
from services.common.completions import Emit, completions
from services.common.errors import ResourceExhausted
from services.common.metrics import TrainerMetrics
from services.common.server import Service
from services.common.specs.layout import JobKeys
from services.common.specs.train import train_config
from services.common.storage import ArtifactStore
from services.trainer import loop as events
from services.trainer.capacity import Capacity
from services.trainer.settings import TrainerSettings

log = logging.getLogger("distill.trainer")


def to_response(event: events.Event) -> trainer_pb2.TrainResponse:
    if isinstance(event, events.Started):
        return trainer_pb2.TrainResponse(started=trainer_pb2.TrainStarted(
            backend=event.backend, device=event.device,
            total_parameters=event.total_parameters,
            trainable_parameters=event.trainable_parameters,
            total_steps=event.total_steps, resumed_from_step=event.resumed_from_step))
    if isinstance(event, events.Step):
        return trainer_pb2.TrainResponse(step=trainer_pb2.TrainStep(
            step=event.step, total_steps=event.total_steps, loss=event.loss,
            sft_loss=event.sft_loss, preference_loss=event.preference_loss,
            kl_loss=event.kl_loss, learning_rate=event.learning_rate,
            tokens_per_second=event.tokens_per_second, eta_seconds=event.eta_seconds,
            epoch=event.epoch))
    if isinstance(event, events.Checkpoint):
        return trainer_pb2.TrainResponse(checkpoint=trainer_pb2.TrainCheckpoint(
            step=event.step, checkpoint=event.ref.as_proto()))
    return trainer_pb2.TrainResponse(finished=trainer_pb2.TrainFinished(
        adapter=event.adapter.as_proto(), steps=event.steps, final_loss=event.final_loss,
        train_seconds=event.train_seconds, tokens=event.tokens))


class TrainerService(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, settings: TrainerSettings, store: ArtifactStore | None = None) -> None:
        self.settings = settings
        self._store = store
        self.capacity = Capacity(settings.capacity)
        self.metrics = TrainerMetrics(settings.capacity,
                                      lambda: len(self.capacity.active_job_ids()))
        self._node: tuple[str, list[str], float] | None = None

    @property
    def store(self) -> ArtifactStore:
        """Opened on first use, so a replica that only answers health checks touches no store."""
        if self._store is None:
            self._store = self.settings.open_store()
        return self._store

    async def Train(  # noqa: N802 - gRPC method name
        self, request: trainer_pb2.TrainRequest, context
    ) -> AsyncIterator[trainer_pb2.TrainResponse]:
        config = train_config(request)  # INVALID_ARGUMENT before any work
        store = self.store  # a bad store URL fails here, before a slot is taken
        # Another job's curated set: PERMISSION_DENIED before a slot is taken or a model loaded.
        JobKeys(config.job_id).key_of(store, config.curated_uri, "curated.uri")
        try:
            slot = self.capacity.acquire(config.job_id)  # RESOURCE_EXHAUSTED at once
        except ResourceExhausted:
            self.metrics.refused()
            raise
        cancel = threading.Event()
        started = threading.Event()

        def work(emit: Emit) -> None:
            from services.trainer.job import run_training

            try:
                run_training(config, self.settings, store, emit, cancel)
            except BaseException as exc:
                if cancel.is_set():
                    log.info("training stopped", extra={"job_id": config.job_id,
                                                        "reason": repr(exc)})
                raise
            finally:
                slot.release()  # when training ends, not when the stream does

        async def train(_: None, emit: Emit) -> None:
            await _in_daemon_thread(lambda: work(emit), f"train-{config.job_id}", started)

        stream = completions([None], train, limit=1)
        try:
            async with contextlib.aclosing(stream):
                async for event in stream:
                    response = to_response(event)
                    self.metrics.observe(response)
                    _log_event(config.job_id, response)
                    yield response
        finally:
            cancel.set()  # a no-op after a normal end; stops the worker after an early one
            if not started.is_set():  # ended before the thread started: it holds no slot
                slot.release()

    async def GetTrainerStatus(  # noqa: N802 - gRPC method name
        self, request: trainer_pb2.GetTrainerStatusRequest, context
    ) -> trainer_pb2.GetTrainerStatusResponse:
        if self._node is None:
            self._node = await asyncio.to_thread(self._probe_node)
        device, backends, memory_gb = self._node
        return trainer_pb2.GetTrainerStatusResponse(
            capacity=self.capacity.capacity, active_job_ids=self.capacity.active_job_ids(),
            device=device, backends=backends, memory_gb=memory_gb)

    def _probe_node(self) -> tuple[str, list[str], float]:
        from services.common.train_memory import node_memory_gb
        from services.trainer.backends import available_backends, cuda_available

        device_type = "cuda" if cuda_available() else "cpu"
        memory = self.settings.memory_gb or node_memory_gb(device_type)
        return ("cuda:0" if device_type == "cuda" else "cpu", available_backends(),
                round(memory, 2))


async def _in_daemon_thread(work: Callable[[], None], name: str,
                            started: threading.Event) -> None:
    """Runs `work` in a daemon thread of its own and ends as it does, raising what it raised.
    Not asyncio.to_thread: the loop's executor would hold the loop open until training ends."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if ended.done():  # the stream has gone
            return
        if error is None:
            ended.set_result(None)
        else:
            ended.set_exception(error)

    def run() -> None:
        error = None
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the stream
            error = exc
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    started.set()
    await ended


def _log_event(job_id: str, response: trainer_pb2.TrainResponse) -> None:
    """The start and end of each training, in this replica's log (the scheduling record)."""
    if response.HasField("started"):
        log.info("training started", extra={
            "job_id": job_id, "resumed_from_step": response.started.resumed_from_step,
            "total_steps": response.started.total_steps})
    elif response.HasField("finished"):
        log.info("training finished", extra={"job_id": job_id,
                                             "steps": response.finished.steps})


def build(settings: TrainerSettings) -> Sequence[Service]:
    servicer = TrainerService(settings)
    return [Service.of(trainer_pb2, trainer_pb2_grpc, servicer,
                       metrics=servicer.metrics.registry)]
