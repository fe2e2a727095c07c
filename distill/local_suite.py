"""The embedded suite: the six services as local processes on loopback (`distill up`).

Also what the tests use to start real service processes, so there is one way to do it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.common.health_probe import check_health

# Start order: the gateway after the stages, since it calls them; the router (which calls the
# gateway when a request comes) last.
SERVICES = ("generator", "judge", "trainer", "exporter", "gateway", "router")
DEFAULT_PORTS = {"gateway": 50051, "generator": 50052, "judge": 50053, "trainer": 50054,
                 "exporter": 50055, "router": 50056}


def consecutive_ports(base: int) -> dict[str, int]:
    """One port per service from `base` up, in DEFAULT_PORTS' order (each service's metrics port
    is its gRPC port + 1000)."""
    return {name: base + i for i, name in enumerate(DEFAULT_PORTS)}


@dataclass(frozen=True)
class SuiteTls:
    """TLS for every service of the suite: one certificate (it must name 127.0.0.1, the
    address the services are dialled at), its key, and the CA that signed it, which the
    gateway (to the stages), the router (to the gateway) and the health checks trust."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    def env(self) -> dict[str, str]:
        return {"DISTILL_TLS_CERT_FILE": str(self.cert_file),
                "DISTILL_TLS_KEY_FILE": str(self.key_file),
                "DISTILL_GATEWAY_STAGE_TLS_CA_FILE": str(self.ca_file),
                "DISTILL_ROUTER_GATEWAY_TLS_CA_FILE": str(self.ca_file)}


@dataclass
class ServiceProcess:
    name: str
    proc: subprocess.Popen
    address: str
    log_path: Path
    # The CA its certificate is checked against when it serves TLS (health checks).
    ca_file: Path | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def serving_event(self) -> dict | None:
        """The service's "serving" log line (its bound ports), or None before it has one."""
        for line in self.log().split("\n")[:-1]:  # whole lines only: it may be mid-write
            if line.startswith("{") and (event := json.loads(line)).get("event") == "serving":
                return event
        return None

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Waits until SERVING; a service started on port 0 gets its address from the port it
        logged (the "serving" line comes before health says SERVING)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}"
                )
            if self.address.endswith(":0") and (event := self.serving_event()) is not None:
                self.address = f"127.0.0.1:{event['port']}"
            if (not self.address.endswith(":0")
                    and check_health(self.address, timeout=1.0, ca_file=self.ca_file)
                    == "SERVING"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} at {self.address} not SERVING after {timeout:.0f}s")

    def terminate(self) -> None:
        """Asks for a graceful stop (SIGTERM) without waiting."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful), then SIGKILL after `timeout`; returns the exit code."""
        return stop_process(self.proc, timeout)


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM (graceful), then SIGKILL after `timeout`; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode


def start_service(
    module: str,
    port: int,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    cwd: Path | None = None,
    ca_file: Path | None = None,
) -> ServiceProcess:
    """Starts `python -m module --port P` without waiting; call wait_healthy() next. With port
    0 the service binds a port the kernel picks (no race with other processes picking ports)
    and wait_healthy() learns it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    name = module.rsplit(".", 1)[-1]
    if port:
        log_path = log_dir / f"{name}-{port}.log"
    else:
        handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=log_dir)
        os.close(handle)
        log_path = Path(path)
    cmd = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,  # Ctrl-C reaches us, not them
        )
    return ServiceProcess(name, proc, f"127.0.0.1:{port}", log_path, ca_file)


@dataclass
class LocalSuite:
    """All six services on loopback, sharing one environment (store URL, cache, auth)."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    tls: SuiteTls | None = None

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def start(self, timeout: float = 60.0) -> None:
        # The gateway calls the others with a credential made for this run (kept in self.env,
        # so a service restarted later gets it too), which no user token replaces...
        if not self.env.get("DISTILL_INTERNAL_TOKEN"):
            self.env = {**self.env, "DISTILL_INTERNAL_TOKEN": secrets.token_urlsafe(32)}
        # ...and finds them through these (DISTILL_GATEWAY_<NAME>_ADDRESS), always its own: an
        # address left in the caller's environment must not send this suite's jobs elsewhere.
        env = dict(self.env)
        for name in SERVICES:
            env[f"DISTILL_GATEWAY_{name.upper()}_ADDRESS"] = self.address(name)
        env["DISTILL_ROUTER_GATEWAY_ADDRESS"] = self.address("gateway")
        env.update(self.tls.env() if self.tls is not None else {})
        try:
            for name in SERVICES:
                self.processes[name] = start_service(
                    f"services.{name}", self.ports[name], self.log_dir, env,
                    ca_file=self.ca_file)
            for process in self.processes.values():
                process.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def ca_file(self) -> Path | None:
        return self.tls.ca_file if self.tls is not None else None

    def health(self) -> dict[str, str]:
        return {name: check_health(self.address(name), ca_file=self.ca_file)
                for name in self.processes}

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """Gateway first (it stops handing out work), then the rest together; bounded time."""
        codes = {}
        if "gateway" in self.processes:
            codes["gateway"] = self.processes["gateway"].stop(timeout)
        others = [name for name in self.processes if name != "gateway"]
        for name in others:
            self.processes[name].terminate()
        for name in others:
            codes[name] = self.processes[name].stop(timeout)
        return codes
