"""The whole suite as five separate processes over real gRPC, on the real S3 server."""

from __future__ import annotations

import json
import os
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.client import Distiller
from distill.local_suite import LocalSuite, consecutive_ports
from tests.fixtures.fake_provider import FakeProviderHandle, run_fake_provider
from tests.fixtures.s3_server import s3_server  # noqa: F401 - pytest fixture
from tests.fixtures.tiny_llama import tiny_llama_dir  # noqa: F401 - pytest fixture

TEACHER_KEY_ENV = "E2E_TEACHER_API_KEY"
# Training that teaches SmolLM2-135M a one-word answer and to end its turn after it, which the
# export's smoke test needs. At the default learning rate (2e-4) 4 steps leave it rambling: an
# unseen review got 256 tokens of "I'm glad to know that you enjoyed..." and no end-of-turn, so
# whether the export passed depended on rounding (it failed in CI). At 1e-3 it answers
# "Positive<|im_end|>".
SMOLLM2_TRAINING = {"max_steps": 4, "learning_rate": 1e-3}
TEACHER_KEY = "sk-e2e-" + secrets.token_hex(8)


class Suite:
    def __init__(self, suite: LocalSuite, client: Distiller, fake: FakeProviderHandle,
                 home: Path) -> None:
        self.suite, self.client, self.fake, self.home = suite, client, fake, home

    def restart(self, name: str) -> None:
        from distill.local_suite import start_service

        process = self.suite.processes[name]
        process.stop()
        self.suite.processes[name] = start_service(
            f"services.{name}", self.suite.ports[name], self.suite.log_dir,
            {**self.suite.env, **_gateway_env(self.suite)})
        self.suite.processes[name].wait_healthy(120)

    def router_url(self) -> str:
        """The router's OpenAI base URL (its HTTP port is in its "serving" line)."""
        return f"http://127.0.0.1:{self.suite.processes['router'].serving_event()['http_port']}/v1"

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.log()[-4000:]}" for n, p in self.suite.processes.items())


def _gateway_env(suite: LocalSuite) -> dict[str, str]:
    return {f"DISTILL_GATEWAY_{n.upper()}_ADDRESS": suite.address(n) for n in suite.ports}


@pytest.fixture
def suite(tmp_path, s3_server) -> Iterator[Suite]:  # noqa: F811 - the fixture above
    bucket = f"e2e-{secrets.token_hex(4)}"
    with run_fake_provider(latency=0.05) as fake:
        env = {
            "DISTILL_STORE_URL": f"s3://{bucket}",
            "DISTILL_S3_ENDPOINT": s3_server.endpoint,
            "DISTILL_S3_ACCESS_KEY": s3_server.access_key,
            "DISTILL_S3_SECRET_KEY": s3_server.secret_key,
            "DISTILL_GATEWAY_DB_PATH": str(tmp_path / "gateway.db"),
            "DISTILL_GRACE_SECONDS": "5",
            # The flywheel test waits on traces and rollout steps: write and look often.
            "DISTILL_ROUTER_TRACE_FLUSH_SECONDS": "0.5",
            "DISTILL_GATEWAY_ROLLOUT_CHECK_SECONDS": "1",
            # The trainer's memory is declared, not the host's: what is refused as too big for
            # it must not depend on the machine the suite runs on (the jobs here need < 2 GB).
            "DISTILL_TRAINER_MEMORY_GB": "8",
            TEACHER_KEY_ENV: TEACHER_KEY,
            **fake.env(TEACHER_KEY_ENV),  # the fake, configured as the endpoints holding it
            "PYTHONUNBUFFERED": "1",
        }
        # gRPC ports and their metrics ports (+1000) below the kernel's ephemeral range
        # (32768+), where outgoing connections and free ports come from.
        base = random.randrange(20000, 31000, 10)
        local = LocalSuite(log_dir=tmp_path / "logs", env={**os.environ, **env},
                           ports=consecutive_ports(base))
        local.start(timeout=120)
        try:
            with Distiller(local.address("gateway")) as client:
                yield Suite(local, client, fake, tmp_path)
        finally:
            local.stop()


def write_dataset(path: Path, count: int) -> Path:
    """A sentiment-label task whose answer is always "positive" (the fake teacher alternates)."""
    rows = [{"prompt": f"Review {i}: I loved it. Sentiment?", "response": "positive"}
            for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
