"""GGUF files through llama.cpp's own tools: the HF→GGUF converter and `llama_model_quantize`.

Every tool runs as a child process, so a crash in native code (or the converter running out of
memory) is a reported failure with the tool's last words, never a dead service:

- `convert_hf_to_gguf.py` / `convert_lora_to_gguf.py` from the converter folder `make setup`
  copies out of the llama-cpp-python sdist, with its vendored `gguf-py` first on PYTHONPATH (the
  converter needs that exact version; PyPI's `gguf` may be older);
- quantizing: `python -m services.exporter.gguf quantize SRC TYPE=DST...`, which calls
  `llama_cpp.llama_model_quantize` with llama.cpp's default parameters for each type (one child
  for all types: llama-cpp-python is imported once).

Both are deterministic: the same folder gives byte-identical GGUFs (no timestamps or paths are
written; the model name comes from the folder name unless given).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import FailedPrecondition

# Output names (gguf/{name}.gguf) and llama.cpp's file types (llama_ftype) for each.
QUANT_FTYPES: dict[str, str] = {
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
_TAIL_LINES = 15


class ToolFailed(Exception):
    """A child process failed; the message says which tool, how, and its last output lines."""


@dataclass(frozen=True)
class Converter:
    """llama.cpp's converter folder: the scripts, their `conversion` package and `gguf-py`."""

    root: Path

    @property
    def convert_hf(self) -> Path:
        return self.root / "convert_hf_to_gguf.py"

    @property
    def convert_lora(self) -> Path:
        return self.root / "convert_lora_to_gguf.py"

    @property
    def gguf_py(self) -> Path:
        return self.root / "gguf-py"

    @classmethod
    def locate(cls, root: Path) -> Converter:
        """The converter at `root`; FailedPrecondition naming what is missing and how to fix."""
        converter = cls(Path(root))
        needed = [converter.convert_hf, converter.convert_lora,
                  converter.gguf_py / "gguf" / "__init__.py"]
        if converter.convert_hf.is_file() and "from conversion import" in \
                converter.convert_hf.read_text(encoding="utf-8", errors="replace"):
            needed.append(converter.root / "conversion" / "__init__.py")  # newer llama.cpp
        missing = [str(p.relative_to(converter.root)) for p in needed if not p.is_file()]
        if missing:
            raise FailedPrecondition(
                f"llama.cpp's converter is incomplete at {converter.root} (missing "
                f"{', '.join(missing)}): run `make setup`, which copies it from the "
                "llama-cpp-python sdist, or set DISTILL_EXPORTER_CONVERTER_DIR to a llama.cpp "
                "checkout of the same version"
            )
        return converter

    def env(self) -> dict[str, str]:
        """The child environment: the vendored gguf-py wins over any installed `gguf`."""
        env = dict(os.environ)
        env.pop("NO_LOCAL_GGUF", None)
        paths = [str(self.gguf_py), str(self.root)]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: never wait on the hub
        return env

    def hf_command(self, model_dir: Path, out: Path, outtype: str = "f16",
                   model_name: str | None = None) -> list[str]:
        cmd = [sys.executable, str(self.convert_hf), str(model_dir), "--outfile", str(out),
               "--outtype", outtype]
        return [*cmd, "--model-name", model_name] if model_name else cmd

    def lora_command(self, adapter_dir: Path, base_dir: Path, out: Path) -> list[str]:
        return [sys.executable, str(self.convert_lora), str(adapter_dir), "--base", str(base_dir),
                "--outfile", str(out), "--outtype", "f16"]


def _tail(output: bytes) -> str:
    lines = [ln for ln in output.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    return "\n".join(lines[-_TAIL_LINES:])


def _how(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
        return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


async def run_tool(
    args: Sequence[str], *, what: str, timeout: float, env: dict[str, str] | None = None
) -> str:
    """Run a child to completion; its stdout, or ToolFailed (status, timeout, last lines).

    The child is killed if the caller is cancelled (a client that went away) or it overruns.
    """
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        raise ToolFailed(f"{what} did not finish within {timeout:g} s") from None
    except BaseException:
        _kill(proc)
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        detail = _tail(stderr) or _tail(stdout)
        raise ToolFailed(f"{what} {_how(proc.returncode)}" + (f":\n{detail}" if detail else ""))
    return stdout.decode("utf-8", errors="replace")


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started


async def convert_hf(converter: Converter, model_dir: Path, out: Path, *, timeout: float,
                     model_name: str | None = None) -> Path:
    """HF folder → f16 GGUF with llama.cpp's converter."""
    await run_tool(converter.hf_command(model_dir, out, "f16", model_name),
                   what="llama.cpp's HF→GGUF converter", timeout=timeout, env=converter.env())
    if not out.is_file():
        raise ToolFailed(f"llama.cpp's HF→GGUF converter wrote no {out.name}")
    return out


async def convert_lora(converter: Converter, adapter_dir: Path, base_dir: Path, out: Path, *,
                       timeout: float) -> Path:
    """PEFT LoRA adapter → LoRA GGUF (f16) for llama.cpp's `--lora`."""
    await run_tool(converter.lora_command(adapter_dir, base_dir, out),
                   what="llama.cpp's LoRA→GGUF converter", timeout=timeout, env=converter.env())
    if not out.is_file():
        raise ToolFailed(f"llama.cpp's LoRA→GGUF converter wrote no {out.name}")
    return out


_DONE = "QUANTIZED "


async def quantize(
    src: Path, outputs: dict[str, Path], *, timeout: float, threads: int = 0
) -> AsyncIterator[tuple[str, Path]]:
    """f16 GGUF → each `outputs` type, through llama_model_quantize in ONE child process.

    Yields (type, path) as each file is finished, while the child goes on with the next; a crash
    raises ToolFailed after the files finished before it were yielded.
    """
    for quant in outputs:
        if quant not in QUANT_FTYPES:
            raise ValueError(f"unknown quantization {quant!r}")
    if not outputs:
        return
    args = [sys.executable, "-m", "services.exporter.gguf", "quantize", str(src),
            *(f"{q}={p}" for q, p in outputs.items()), "--threads", str(threads)]
    what = f"llama.cpp's quantizer ({', '.join(outputs)})"
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=_child_env(), start_new_session=True,
    )
    stderr: collections.deque[bytes] = collections.deque(maxlen=200)
    drain = asyncio.ensure_future(_drain(proc.stderr, stderr))
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), max(left, 0.001))
            except TimeoutError:
                raise ToolFailed(f"{what} did not finish within {timeout:g} s") from None
            if not line:
                break
            text = line.decode("utf-8", errors="replace").strip()
            if text.startswith(_DONE):
                quant = text[len(_DONE) :]
                yield quant, outputs[quant]
        await proc.wait()
        await drain
        if proc.returncode != 0:
            detail = _tail(b"".join(stderr))
            raise ToolFailed(f"{what} {_how(proc.returncode)}" + (f":\n{detail}" if detail else ""))
    finally:
        _kill(proc)
        drain.cancel()
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())


async def _drain(stream: asyncio.StreamReader | None, into: collections.deque[bytes]) -> None:
    """Keep reading a child's chatty stream (llama.cpp logs every tensor) so it never blocks."""
    if stream is None:
        return
    while line := await stream.readline():
        into.append(line)


def _child_env() -> dict[str, str]:
    """This process's environment, with the repo importable (for `-m services...`)."""
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    return env


def quantize_in_process(src: Path, dst: Path, quant: str, threads: int = 0) -> None:
    """The child's side: one call to llama_model_quantize (what llama-quantize does)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_FTYPES[quant])
    params.nthread = threads if threads > 0 else (os.cpu_count() or 1)
    status = llama_cpp.llama_model_quantize(
        str(src).encode(), str(dst).encode(), ctypes.byref(params)
    )
    if status != 0:
        raise SystemExit(f"llama_model_quantize({src.name} → {quant}) returned {status}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.exporter.gguf")
    commands = parser.add_subparsers(dest="command", required=True)
    q = commands.add_parser("quantize", help="quantize a GGUF with llama_model_quantize")
    q.add_argument("src", type=Path)
    q.add_argument("outputs", nargs="+", metavar="TYPE=PATH",
                   help=f"one per output; TYPE one of {', '.join(QUANT_FTYPES)}")
    q.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    for output in args.outputs:
        quant, _, path = output.partition("=")
        if quant not in QUANT_FTYPES or not path:
            parser.error(f"bad output {output!r}: expected TYPE=PATH")
        quantize_in_process(args.src, Path(path), quant, args.threads)
        print(_DONE + quant, flush=True)


if __name__ == "__main__":
    main()
