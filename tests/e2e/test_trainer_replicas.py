"""A gateway scheduling onto two real trainer processes (capacity 1 each), over real gRPC.

Three concurrent jobs: all succeed, no trainer ever runs two trainings at once (from each
trainer's own log and metrics), and the gateway's `distill_training_queue_depth`, scraped over
HTTP, matches the jobs waiting for a trainer. Then a trainer is SIGKILLed mid-training: the job
moves to the other trainer, which resumes it from the last checkpoint, and still succeeds.

Real generator, judge, trainers and gateway on a shared file:// store, a fake OpenAI-compatible
teacher, the tiny random Llama as student, and a stub exporter (a random student never passes
the real smoke test; the export is not what this tests).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from distill.client import Distiller
from distill.local_suite import ServiceProcess, start_service
from distill.v1 import common_pb2, gateway_pb2, trainer_pb2, trainer_pb2_grpc
from tests.e2e.conftest import TEACHER_KEY, TEACHER_KEY_ENV, write_dataset
from tests.fixtures.fake_provider import FakeProviderHandle, run_fake_provider
from tests.fixtures.processes import REPO, metrics_port
from tests.fixtures.tiny_llama import tiny_llama_dir  # noqa: F401 - pytest fixture
from tests.fixtures.waits import wait_for

pytestmark = pytest.mark.slow
State = gateway_pb2
WAITING = "waiting for a trainer"


@dataclass
class Cluster:
    client: Distiller
    gateway: ServiceProcess
    trainers: dict[str, ServiceProcess]  # by address
    others: list[ServiceProcess]
    fake: FakeProviderHandle
    student: Path
    tmp: Path

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} {p.address}\n{p.log()[-3000:]}"
                         for p in [self.gateway, *self.trainers.values(), *self.others])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_llama_dir) -> Iterator[Cluster]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("replicas")
    logs = tmp / "logs"
    with run_fake_provider(latency=0.02, replies=["positive"]) as fake:
        env = {
            **os.environ,
            "DISTILL_STORE_URL": f"file://{tmp / 'store'}",
            "DISTILL_METRICS_PORT": "0",  # free ports, read back from each "serving" log line
            "DISTILL_GRACE_SECONDS": "2",
            "DISTILL_TRAINER_CAPACITY": "1",
            # Two trainers share this machine's cores: a torch thread pool each would thrash.
            "OMP_NUM_THREADS": "1",
            TEACHER_KEY_ENV: TEACHER_KEY,
            **fake.env(TEACHER_KEY_ENV),  # the fake, configured as the endpoints holding it
            "PYTHONUNBUFFERED": "1",
        }

        def start(module: str, extra: dict[str, str] | None = None) -> ServiceProcess:
            # port 0: each binds a port the kernel picks; wait_healthy() reads it back
            return start_service(module, 0, logs, {**env, **(extra or {})}, cwd=REPO)

        others = [start("services.generator"), start("services.judge"),
                  start("tests.fixtures.stub_exporter")]
        trainers = [start("services.trainer"), start("services.trainer")]
        generator, judge, exporter = others
        processes = [*others, *trainers]
        try:
            for process in processes:
                process.wait_healthy(120)
            # the gateway last: it is given the others' addresses, known once they serve
            gateway = start("services.gateway", {
                "DISTILL_GATEWAY_DB_PATH": str(tmp / "gateway.db"),
                "DISTILL_GATEWAY_GENERATOR_ADDRESS": generator.address,
                "DISTILL_GATEWAY_JUDGE_ADDRESS": judge.address,
                "DISTILL_GATEWAY_EXPORTER_ADDRESS": exporter.address,
                "DISTILL_GATEWAY_TRAINER_ADDRESSES": ",".join(t.address for t in trainers),
                "DISTILL_GATEWAY_TRAINER_SCHEDULE_INTERVAL_SECONDS": "0.5",
                "DISTILL_GATEWAY_STAGE_IDLE_TIMEOUT_SECONDS": "120",
            })
            processes.append(gateway)
            gateway.wait_healthy(120)
            with Distiller(gateway.address) as client:
                yield Cluster(client, gateway, {t.address: t for t in trainers}, others, fake,
                              tiny_llama_dir, tmp)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.stop(10)


def spec(cluster: Cluster, name: str, steps: int, checkpoint_interval: int
         ) -> gateway_pb2.DistillSpec:
    teacher = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                   base_url=cluster.fake.openai_base_url,
                                   api_key_env=TEACHER_KEY_ENV, max_tokens=8)
    judge = common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
        mode=common_pb2.MATCH_MODE_LABEL))
    dataset = cluster.client.upload(write_dataset(cluster.tmp / f"{name}.jsonl", 4))
    return cluster.client.spec(
        dataset=dataset, teacher=teacher, student=str(cluster.student), judge=judge,
        n_samples=2, top_k=1, min_score=5, display_name=name,
        training={"max_steps": steps, "batch_size": 2, "max_seq_length": 64,
                  "checkpoint_interval": checkpoint_interval},
        eval={"holdout_fraction": 0})


def scrape(process: ServiceProcess) -> dict[str, float]:
    """The process's metrics as {'name{labels}': value}."""
    port = metrics_port(process)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def log_events(process: ServiceProcess, event: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in process.log().splitlines()
                        if line.startswith("{")) if e.get("event") == event]


def trainer_status(address: str) -> trainer_pb2.GetTrainerStatusResponse:
    with grpc.insecure_channel(address) as channel:
        return trainer_pb2_grpc.TrainerServiceStub(channel).GetTrainerStatus(
            trainer_pb2.GetTrainerStatusRequest(), timeout=30)


def job_id(name: str) -> str:
    return name.removeprefix("jobs/")


def test_three_jobs_on_two_trainers(cluster: Cluster):
    names = [cluster.client.distill(spec(cluster, f"job{i}", steps=30,
                                         checkpoint_interval=10)).name for i in range(3)]
    samples: list[tuple[int, float]] = []  # (jobs waiting per the job rows, metric)
    peak_active = {address: 0.0 for address in cluster.trainers}
    deadline = time.monotonic() + 240
    while True:
        before = [cluster.client.get(n) for n in names]
        depth = scrape(cluster.gateway)["distill_training_queue_depth"]
        after = [cluster.client.get(n) for n in names]
        for address, trainer in cluster.trainers.items():
            active = scrape(trainer)["distill_trainer_active_trainings"]
            peak_active[address] = max(peak_active[address], active)
        if [(j.state, j.progress.message) for j in before] == \
                [(j.state, j.progress.message) for j in after]:
            waiting = sum(j.state == State.JOB_STATE_TRAINING and
                          j.progress.message.startswith(WAITING) for j in after)
            samples.append((waiting, depth))
        if all(j.state in (State.JOB_STATE_SUCCEEDED, State.JOB_STATE_FAILED) for j in after):
            break
        assert time.monotonic() < deadline, f"jobs never finished\n{cluster.logs()}"
        time.sleep(0.2)

    for job in after:
        assert job.state == State.JOB_STATE_SUCCEEDED, f"{job.error}\n{cluster.logs()}"
        assert job.outputs.adapter.uri and job.outputs.student_gguf.uri
    # The metric followed the queue: equal whenever the job rows held still around the scrape,
    # and the third job did wait while the other two trained.
    assert all(waiting == depth for waiting, depth in samples), samples
    assert (1, 1.0) in samples, samples
    assert max(peak_active.values()) <= 1.0

    # Each trainer's own record: no two trainings overlap; both trainers were used; nothing was
    # refused (the gateway only sent work to free replicas).
    placed = {}
    for address, trainer in cluster.trainers.items():
        started = log_events(trainer, "training started")
        finished = log_events(trainer, "training finished")
        assert len(started) == len(finished) >= 1, trainer.log()[-3000:]
        intervals = sorted(zip([e["ts"] for e in started], [e["ts"] for e in finished],
                               strict=True))
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"two trainings at once on {address}: {intervals}"
        metrics = scrape(trainer)
        assert metrics['distill_trainer_trainings_total{outcome="refused"}'] == 0
        assert metrics['distill_trainer_trainings_total{outcome="finished"}'] == len(finished)
        placed.update({e["job_id"]: address for e in started})
    assert set(placed) == {job_id(n) for n in names}
    assert len(set(placed.values())) == 2
    gateway = scrape(cluster.gateway)
    assert gateway['distill_jobs{state="succeeded"}'] == 3
    assert gateway["distill_training_queue_depth"] == 0
    assert gateway['distill_training_requeues_total{reason="busy"}'] == 0


def test_killed_trainer_job_resumes_on_the_other(cluster: Cluster):
    STEPS = 150  # noqa: N806
    name = cluster.client.distill(spec(cluster, "kill", steps=STEPS, checkpoint_interval=5)).name
    seen = []

    def checkpointed() -> bool:
        job = cluster.client.get(name)
        assert job.state not in (State.JOB_STATE_FAILED, State.JOB_STATE_SUCCEEDED), \
            f"{job}\n{cluster.logs()}"
        seen[:] = [job]
        return bool(job.outputs.checkpoint.uri)  # a checkpoint is in the store

    wait_for(checkpointed, lambda: f"a checkpoint\n{cluster.logs()}", interval=0.1)
    job = seen[0]  # kill its trainer now
    victim = next(a for a in cluster.trainers if job_id(name) in
                  trainer_status(a).active_job_ids)
    survivor = next(a for a in cluster.trainers if a != victim)
    cluster.trainers[victim].proc.kill()  # SIGKILL: no goodbye on the stream
    killed_at_step = job.progress.done
    assert killed_at_step < STEPS, "training ended before the kill: make it longer"

    final = cluster.client.wait(name, timeout=240)
    assert final.state == State.JOB_STATE_SUCCEEDED, f"{final.error}\n{cluster.logs()}"
    resumed = [e for e in log_events(cluster.trainers[survivor], "training started")
               if e["job_id"] == job_id(name)]
    assert len(resumed) == 1 and resumed[0]["resumed_from_step"] > 0, resumed
    assert resumed[0]["resumed_from_step"] % 5 == 0  # a checkpoint step
    finished = [e for e in log_events(cluster.trainers[survivor], "training finished")
                if e["job_id"] == job_id(name)]
    assert finished and finished[0]["steps"] == STEPS
    gateway = scrape(cluster.gateway)
    assert gateway['distill_training_requeues_total{reason="replica_lost"}'] == 1
    assert gateway["distill_trainer_replicas_unreachable"] == 1
    lost = [e for e in log_events(cluster.gateway, "trainer lost mid-training; task back in "
                                  "the queue") if e["job_id"] == job_id(name)]
    assert len(lost) == 1 and lost[0]["replica"] == victim
    assert re.search(r"UNAVAILABLE|unavailable|reset|Socket closed|no message",
                     lost[0]["reason"]), lost[0]
