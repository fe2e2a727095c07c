"""Settings of the router service (env prefix DISTILL_ROUTER_, then DISTILL_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from services.common.settings import MiB, ModelCallSettings


class RouterSettings(ModelCallSettings):
    service_name: ClassVar[str] = "router"
    default_port: ClassVar[int] = 50056

    # Where alias records and callers' projects come from (DirectoryService, WatchAliases). The
    # router presents the internal token there when it has one (it then serves every project),
    # else auth_token.
    gateway_address: str = "127.0.0.1:50051"
    # TLS to the gateway: the CA (PEM) that signed its certificate; unset, plaintext.
    gateway_tls_ca_file: Path | None = None
    # OpenAI's HTTP API. None means the gRPC port + 2000 (52056 by default), or a free port
    # when the gRPC port is 0 (logged in the "serving" line as http_port).
    http_port: int | None = Field(default=None, ge=0, le=65535)
    # Request bodies over this are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=1 * MiB, ge=1024)
    # An alias without its own max_tokens_limit allows requests up to this many.
    max_tokens_limit: int = Field(default=4096, ge=1)
    # Alias records are read again after this long; a change pushed by the gateway's
    # WatchAliases stream refreshes the alias at once (services/router/alias_watch.py).
    alias_ttl_seconds: float = Field(default=30.0, ge=0)
    # A lost WatchAliases stream is opened again after this long (resuming where it stopped).
    alias_feed_reconnect_seconds: float = Field(default=1.0, gt=0)

    # Callers' keys, with the internal token (services/router/auth.py): the gateway's answer
    # about a key is trusted this long (a revoked key is refused within it)...
    caller_ttl_seconds: float = Field(default=10.0, ge=0)
    # ...a key it refused is refused again without asking for this long...
    caller_failure_ttl_seconds: float = Field(default=1.0, ge=0)
    # ...and each of the two caches holds at most this many keys (least recently used go).
    caller_cache_size: int = Field(default=10_000, ge=1)

    # Student engines: one OpenAI-compatible server process per GGUF.
    # "llama-server": llama.cpp's own server (continuous batching, parallel slots), the binary
    # `make setup` builds (services/common/llama_server.py; DISTILL_LLAMA_SERVER overrides);
    # "llama-cpp-python": `python -m llama_cpp.server`, one request at a time.
    engine: Literal["llama-server", "llama-cpp-python"] = "llama-server"
    engine_n_ctx: int = Field(default=2048, ge=256)
    # llama-server's parallel slots (requests decoded together).
    engine_parallel: int = Field(default=4, ge=1)
    engine_threads: int | None = Field(default=None, ge=1)
    engine_start_timeout_seconds: float = Field(default=120.0, gt=0)
    engine_request_timeout_seconds: float = Field(default=300.0, gt=0)
    # Engines left unused this long are stopped (0: never).
    engine_idle_seconds: float = Field(default=900.0, ge=0)
    # Resident memory of all engines together; the least recently used idle ones are stopped
    # to make room for a new one (its GGUF's size counts until it runs).
    engine_memory_budget_bytes: int = Field(default=8 * 1024 * MiB, ge=1)
    max_engines: int = Field(default=4, ge=1)

    # Traces (services/common/traces/): every answer, written in batches to the store as
    # traces/{project}/{alias}/{day}/ JSONL; the queue holds at most trace_capacity, the rest
    # are dropped and counted (distill_router_traces{outcome="dropped"}), never waited for.
    trace_capture: bool = True
    trace_capacity: int = Field(default=10_000, ge=1)
    trace_batch_rows: int = Field(default=1_000, ge=1)
    trace_flush_seconds: float = Field(default=5.0, gt=0)

    # Shadow targets' calls running at once (beyond it they are skipped and counted).
    shadow_concurrency: int = Field(default=8, ge=1)

    # Live judging (an alias's routing.judge; services/router/live_judge.py): answers scored at
    # once, and how many more may wait (beyond them a trace is written unscored and counted in
    # distill_router_judged{outcome="dropped"}); an LLM judge's retries. Its endpoints and keys
    # are the ModelCallSettings fields, as for the teachers.
    judge_concurrency: int = Field(default=4, ge=1)
    judge_queue: int = Field(default=1_000, ge=0)
    judge_max_retries: int = Field(default=2, ge=0)

    # Teacher aliases: the provider clients' retries (their endpoints and keys: the
    # ModelCallSettings fields, as for the generator).
    teacher_max_retries: int = Field(default=3, ge=0)
    teacher_max_concurrency: int = Field(default=16, ge=1)

    @property
    def http_bind_port(self) -> int:
        if self.http_port is not None:
            return self.http_port
        return 0 if self.bind_port == 0 else self.bind_port + 2000
