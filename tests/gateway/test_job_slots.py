"""The running-job cap over real gRPC: with one slot, later jobs wait PENDING and start in
submission order as running ones end, also after a gateway restart.

The stages are on a held port nothing serves, so a running job waits at the generator's door
(GENERATING) until it is cancelled: no model, no teacher call.
"""

from __future__ import annotations

from distill.client import Distiller
from distill.v1 import gateway_pb2
from services.gateway.server import build
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.ports import held_port
from tests.fixtures.waits import wait_for
from tests.gateway.test_service import GOOD, spec, stageless, upload

PENDING, GENERATING = gateway_pb2.JOB_STATE_PENDING, gateway_pb2.JOB_STATE_GENERATING


def states(client: Distiller, names: list[str]) -> list[int]:
    return [client.get(name).state for name in names]


def test_jobs_over_the_cap_wait_pending_then_run_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    with held_port() as port:
        settings = stageless(tmp_path, port, stage_connect_timeout_seconds=600, max_running_jobs=1)
        with serve_in_thread(settings, lambda: build(settings)) as address, \
                Distiller(address) as client:
            dataset = upload(client, tmp_path, GOOD)
            names = [client.distill(spec(dataset)).name for _ in range(3)]
            wait_for(lambda: states(client, names) == [GENERATING, PENDING, PENDING],
                     lambda: f"the first job running, got {states(client, names)}")
            client.cancel(names[0])
            wait_for(lambda: states(client, names)[1:] == [GENERATING, PENDING],
                     lambda: f"the second job running, got {states(client, names)}")
            assert client.get(names[2]).progress.message == "queued"
        # A restart: the running job resumes first, the waiting one still waits.
        with serve_in_thread(settings, lambda: build(settings)) as address, \
                Distiller(address) as client:
            wait_for(lambda: states(client, names)[1:] == [GENERATING, PENDING],
                     lambda: f"the second job resumed, got {states(client, names)}")
            client.cancel(names[1])
            wait_for(lambda: client.get(names[2]).state == GENERATING, "the third job running")
            assert client.get(names[0]).state == gateway_pb2.JOB_STATE_CANCELLED
            client.cancel(names[2])
