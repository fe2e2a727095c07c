"""Settings of the exporter service (env prefix DISTILL_EXPORTER_, then DISTILL_)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from services.common.settings import ServiceSettings


def default_converter_dir() -> Path:
    """Where `make setup` copies llama.cpp's converter: `<venv>/share/distill/llama.cpp`."""
    return Path(sys.prefix) / "share" / "distill" / "llama.cpp"


class ExporterSettings(ServiceSettings):
    service_name: ClassVar[str] = "exporter"
    default_port: ClassVar[int] = 50055
    stage: ClassVar[bool] = True

    # llama.cpp's convert_hf_to_gguf.py, convert_lora_to_gguf.py, conversion/ and gguf-py/.
    converter_dir: Path = Field(default_factory=default_converter_dir)
    # Local scratch space for one export (adapter, merged model, GGUFs); None: the system temp.
    work_dir: Path | None = None
    # Exports running at once in this process; one more is answered RESOURCE_EXHAUSTED.
    max_concurrent_exports: int = Field(default=1, ge=1)
    # Wall-clock limits of the child processes (converter, quantizer, smoke test).
    convert_timeout_seconds: float = Field(default=3600.0, gt=0)
    quantize_timeout_seconds: float = Field(default=3600.0, gt=0)
    smoke_timeout_seconds: float = Field(default=600.0, gt=0)
    # CPU threads for quantizing and the smoke tests; 0 means all cores.
    threads: int = Field(default=0, ge=0)
    # Context window of the smoke-test model (prompt plus answer must fit).
    smoke_context_tokens: int = Field(default=2048, ge=256)
