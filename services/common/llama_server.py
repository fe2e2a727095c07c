"""llama.cpp's own HTTP server (`llama-server`): where its binary is, and starting it on loopback.

`make setup` builds the binary from the llama.cpp vendored in the llama-cpp-python sdist the
wheel comes from (scripts/llama_server.sh: same portable CPU flags, cached under
$DISTILL_CACHE_DIR) and copies it into the virtualenv's bin/, beside the `distill` script.
DISTILL_LLAMA_SERVER names another binary (a CUDA build, a container's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import FailedPrecondition, Unavailable

BINARY_ENV = "DISTILL_LLAMA_SERVER"

# llama-server logs each address it bound, the port the kernel picked included (with --port 0).
_LISTENING = re.compile(r"listening on (http://\S+)")


def llama_server_binary() -> Path:
    """The llama-server executable: $DISTILL_LLAMA_SERVER, else `<venv>/bin/llama-server`."""
    explicit = os.environ.get(BINARY_ENV)
    path = Path(explicit) if explicit else Path(sys.prefix) / "bin" / "llama-server"
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"{BINARY_ENV}={explicit}" if explicit else str(path)
        raise FailedPrecondition(
            f"llama-server not found at {where}: run `make setup` (it builds llama-server from "
            f"the llama-cpp-python sdist into the cache and copies it there), or set "
            f"{BINARY_ENV} to a llama-server executable"
        )
    return path


@dataclass
class LlamaServer:
    """A started llama-server child; `url` is known once `wait_ready` returns."""

    proc: subprocess.Popen
    log_path: Path
    url: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> str:
        """Waits until the model is loaded (`GET /health` is 200; 503 while loading) and
        returns the base URL. Unavailable if the process exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"llama-server exited with {self.proc.returncode}:\n"
                                  f"{self.log()[-3000:]}")
            if not self.url and (found := _LISTENING.search(self.log())):
                self.url = found.group(1)
            if self.url and _healthy(self.url):
                return self.url
            time.sleep(0.1)
        raise Unavailable(f"llama-server not ready after {timeout:.0f} s:\n{self.log()[-3000:]}")


def start_llama_server(model: Path, log_path: Path, *, port: int = 0,
                       args: Sequence[str] = ()) -> LlamaServer:
    """Starts llama-server for the GGUF `model` on 127.0.0.1 (port 0: one the kernel picks, read
    back from its log) without waiting; call `wait_ready` next. `args` are further llama-server
    flags (`--parallel`, `--ctx-size`, `--lora`, ...)."""
    cmd = [str(llama_server_binary()), "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--no-webui", *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return LlamaServer(proc, log_path)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
