"""The router as a real process in front of a real gateway, a real engine and the fake teacher.

One stack per module: the gateway in this process (its job store holds a SUCCEEDED job whose
student is the offline SmolLM2 GGUF, put in the tests' S3 server), the router started as
`python -m services.router` (port 0; its HTTP port comes from its "serving" line), which starts
llama-server for the GGUF on first use. `projects` is the multi-project setup instead: a gateway
with an admin key, two projects' API keys and the internal token, which the router holds.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import psutil
import pytest

from distill.client import Distiller
from distill.local_suite import ServiceProcess
from distill.v1 import common_pb2, gateway_pb2, router_pb2_grpc
from services.common.models import packaged_smollm2_gguf
from services.common.storage import ArtifactStore, open_store
from services.gateway.job_store import JobStore
from services.gateway.server import build as build_gateway
from services.gateway.settings import GatewaySettings
from tests.fixtures.fake_provider import FakeProviderHandle, run_fake_provider
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.processes import start_module
from tests.fixtures.s3_server import s3_server  # noqa: F401 - pytest fixture

TEACHER_KEY_ENV = "ROUTER_TEST_TEACHER_API_KEY"
STUDENT_JOB = "jobs/student1"


@dataclass
class Stack:
    gateway: Distiller
    router: ServiceProcess
    fake: FakeProviderHandle
    token: str
    grpc_channel: grpc.Channel
    store: ArtifactStore  # the router's and the gateway's (traces land here)
    router_env: dict[str, str]
    home: Path

    def another_router(self, **env: str) -> ServiceProcess:
        """A second router on the same gateway and store, with `env` on top of the first's;
        the caller stops it."""
        return start_module("services.router", self.home / "logs-2", env={
            **self.router_env, **env})

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.router.serving_event()['http_port']}/v1"

    @property
    def stub(self) -> router_pb2_grpc.RouterServiceStub:
        return router_pb2_grpc.RouterServiceStub(self.grpc_channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def metrics(self) -> str:
        """The router's Prometheus text."""
        port = self.router.serving_event()["metrics_port"]
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30, trust_env=False).text

    def engines(self) -> list[psutil.Process]:
        """The engine processes the router runs now."""
        children = psutil.Process(self.router.proc.pid).children(recursive=True)
        return [p for p in children if _is_engine(p)]

    def set_teacher_alias(self, name: str, expected_version: int = 0,
                          max_tokens_limit: int = 0) -> gateway_pb2.Alias:
        return self.gateway.set_alias(name, target=teacher_target(self.fake, max_tokens_limit),
                                      expected_version=expected_version)


def teacher_target(fake: FakeProviderHandle, max_tokens_limit: int = 0) -> gateway_pb2.AliasTarget:
    """An alias target answered by the fake provider, as a teacher."""
    target = gateway_pb2.AliasTarget(max_tokens_limit=max_tokens_limit)
    target.teacher.CopyFrom(common_pb2.ModelSpec(
        provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
        base_url=fake.openai_base_url, api_key_env=TEACHER_KEY_ENV))
    return target


def router_env(gateway_address: str, home: Path, fake: FakeProviderHandle, teacher_key: str,
               **env: str) -> dict[str, str]:
    """A test router's environment (`env` on top): records read again on every request, the
    fake provider as the teacher endpoint."""
    return {
        "DISTILL_ROUTER_GATEWAY_ADDRESS": gateway_address,
        "DISTILL_CACHE_DIR": str(home / "cache"),
        "DISTILL_ROUTER_HTTP_PORT": "0",
        "DISTILL_ROUTER_ENGINE_THREADS": "1",
        "DISTILL_ROUTER_ALIAS_TTL_SECONDS": "0",
        "DISTILL_GRACE_SECONDS": "2",
        "DISTILL_ROUTER_TRACE_FLUSH_SECONDS": "0.2",
        TEACHER_KEY_ENV: teacher_key,
        **fake.env(TEACHER_KEY_ENV),  # the fake is the endpoint that gets the teacher key
        # Upstream aliases name the fake's URL (as a student server: no key).
        "DISTILL_ALLOWED_BASE_URL_HOSTS": '["127.0.0.1"]',
        "DISTILL_ALLOW_LOOPBACK_ADDRESSES": "true",
        **env,
    }


def _is_engine(process: psutil.Process) -> bool:
    try:
        command = process.cmdline()
        return bool(command) and process.is_running() and (
            Path(command[0]).name == "llama-server" or "llama_cpp.server" in command)
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory, s3_server) -> Iterator[Stack]:  # noqa: F811 - the fixture above
    home: Path = tmp_path_factory.mktemp("router")
    token = "tok-" + secrets.token_hex(8)
    teacher_key = "sk-router-" + secrets.token_hex(8)
    store_url = f"s3://router-{secrets.token_hex(4)}"
    store = open_store(store_url, **s3_server.store_settings())
    gguf = store.put_file("jobs/student1/gguf/student.gguf", packaged_smollm2_gguf())
    jobs = JobStore(home / "gateway.db")
    try:
        job = gateway_pb2.Job(name=STUDENT_JOB, state=gateway_pb2.JOB_STATE_SUCCEEDED)
        job.outputs.student_gguf.CopyFrom(gguf.as_proto())
        jobs.create_job(job)
    finally:
        jobs.close()
    s3_env = {"DISTILL_STORE_URL": store_url, "DISTILL_S3_ENDPOINT": s3_server.endpoint,
              "DISTILL_S3_ACCESS_KEY": s3_server.access_key,
              "DISTILL_S3_SECRET_KEY": s3_server.secret_key}
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=store_url,
                               s3_endpoint=s3_server.endpoint, s3_access_key=s3_server.access_key,
                               s3_secret_key=s3_server.secret_key,
                               db_path=home / "gateway.db", auth_token=token)
    with run_fake_provider(api_key=teacher_key) as fake, \
            serve_in_thread(settings, lambda: build_gateway(settings)) as gateway_address, \
            Distiller(gateway_address, token=token) as gateway:
        env = router_env(gateway_address, home, fake, teacher_key, **s3_env,
                         DISTILL_AUTH_TOKEN=token)
        router = start_module("services.router", home / "logs", env=env)
        channel = grpc.insecure_channel(router.address)
        running = Stack(gateway, router, fake, token, channel, store, env, home)
        try:
            yield running
        finally:
            channel.close()
            engines = running.engines()
            assert router.stop() == 0, router.log()[-3000:]
            assert not any(p.is_running() for p in engines), "an engine outlived the router"


@dataclass
class Projects:
    """Projects alpha and beta on one gateway (admin key, internal token) and a router that
    holds the internal token, so it serves both."""

    gateway_address: str
    admin: Distiller
    router: ServiceProcess
    fake: FakeProviderHandle
    keys: dict[str, str]  # project → its API key
    internal_token: str
    grpc_channel: grpc.Channel

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.router.serving_event()['http_port']}/v1"

    @property
    def stub(self) -> router_pb2_grpc.RouterServiceStub:
        return router_pb2_grpc.RouterServiceStub(self.grpc_channel)

    def client(self, project: str) -> Distiller:
        """The gateway's client with `project`'s key; the caller closes it."""
        return Distiller(self.gateway_address, token=self.keys[project])


# How long the router trusts the gateway's answer about a key in the `projects` stack.
CALLER_TTL_SECONDS = 1.0


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> Iterator[Projects]:
    home: Path = tmp_path_factory.mktemp("router-projects")
    admin_key, internal = "admin-" + secrets.token_hex(16), "internal-" + secrets.token_hex(16)
    teacher_key = "sk-router-" + secrets.token_hex(8)
    store_url = f"file://{home / 'store'}"
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=store_url,
                               db_path=home / "gateway.db", admin_token=admin_key,
                               internal_token=internal)
    with run_fake_provider(api_key=teacher_key) as fake, \
            serve_in_thread(settings, lambda: build_gateway(settings)) as gateway_address, \
            Distiller(gateway_address, token=admin_key) as admin:
        keys = {project: admin.create_api_key(project).key for project in ("alpha", "beta")}
        env = router_env(gateway_address, home, fake, teacher_key, DISTILL_STORE_URL=store_url,
                         DISTILL_INTERNAL_TOKEN=internal,
                         DISTILL_ROUTER_CALLER_TTL_SECONDS=str(CALLER_TTL_SECONDS))
        router = start_module("services.router", home / "logs", env=env)
        channel = grpc.insecure_channel(router.address)
        try:
            yield Projects(gateway_address, admin, router, fake, keys, internal, channel)
        finally:
            channel.close()
            assert router.stop() == 0, router.log()[-3000:]
