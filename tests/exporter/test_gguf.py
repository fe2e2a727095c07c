"""llama.cpp's tools as child processes: crashes, timeouts and bad files are reported, not fatal;
the smoke test catches a GGUF that tokenises differently from the model's tokenizer."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition
from services.common.specs.export import DEFAULT_SMOKE_MESSAGES, ExportJob
from services.common.storage import LocalStore
from services.exporter import gguf, smoke
from services.exporter.pipeline import Exporter, Output, Stage
from tests.exporter.helpers import settings_for


def test_incomplete_converter_is_a_failed_precondition(tmp_path):
    (tmp_path / "convert_hf_to_gguf.py").write_text("from conversion import ModelBase\n")
    with pytest.raises(FailedPrecondition) as raised:
        gguf.Converter.locate(tmp_path)
    message = str(raised.value)
    assert "conversion/__init__.py" in message and "gguf-py/gguf/__init__.py" in message
    assert "convert_lora_to_gguf.py" in message and "make setup" in message


def test_vendored_gguf_py_comes_first(tmp_path):
    converter = gguf.Converter(tmp_path)
    assert converter.env()["PYTHONPATH"].split(":")[0] == str(tmp_path / "gguf-py")


def test_a_crashing_child_is_reported_with_its_signal():
    code = "import os, signal, sys; print('last words', file=sys.stderr); " \
           "os.kill(os.getpid(), signal.SIGSEGV)"
    with pytest.raises(gguf.ToolFailed) as raised:
        asyncio.run(gguf.run_tool([sys.executable, "-c", code], what="the tool", timeout=30))
    assert "the tool was killed by SIGSEGV" in str(raised.value)
    assert "last words" in str(raised.value)


def test_a_hanging_child_is_killed_at_its_timeout():
    code = "import time; time.sleep(60)"
    with pytest.raises(gguf.ToolFailed) as raised:
        asyncio.run(gguf.run_tool([sys.executable, "-c", code], what="the tool", timeout=0.5))
    assert "did not finish within 0.5 s" in str(raised.value)


def _quantize(src: Path, outputs: dict[str, Path]) -> list[str]:
    async def run():
        return [q async for q, _ in gguf.quantize(src, outputs, timeout=120, threads=2)]

    return asyncio.run(run())


def test_quantizing_a_bad_file_fails_cleanly(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(gguf.ToolFailed) as raised:
        _quantize(bogus, {"q8_0": tmp_path / "q8_0.gguf"})
    assert "llama.cpp's quantizer (q8_0)" in str(raised.value)


def test_smoke_test_of_a_bad_file_is_a_failed_result(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 100)
    result = asyncio.run(smoke.smoke_test(smoke.SmokeRequest(
        model=str(bogus), messages=list(DEFAULT_SMOKE_MESSAGES), max_tokens=8,
        expected_prompt="", expected_ids=[], end_of_turn="<|im_end|>"), timeout=120))
    assert not result.passed and result.failure
    assert result.prompt == DEFAULT_SMOKE_MESSAGES[0]["content"]


@pytest.fixture(scope="module")
def unrepaired_f16(tiny_llama_dir, tmp_path_factory) -> Path:
    """The tiny Llama converted as is: its tokenizer.json is the one transformers' GGUF import
    writes, which llama.cpp's converter takes for a SentencePiece vocabulary."""
    settings = settings_for(tmp_path_factory.mktemp("unrepaired"))
    converter = gguf.Converter.locate(settings.converter_dir)
    out = tmp_path_factory.mktemp("gguf") / "f16.gguf"
    return asyncio.run(gguf.convert_hf(converter, tiny_llama_dir, out, timeout=600))


def test_smoke_test_catches_a_misconverted_tokenizer(unrepaired_f16, tiny_llama_dir):
    """llama.cpp aborts on this vocabulary (byte-fallback lookups of tokens a byte-level BPE
    does not have): the crash stays in the child and is reported as a failed smoke test."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    messages = [{"role": "user", "content": "Label the review: great movie"}]
    text, ids = smoke.expected_prompt(tokenizer, messages)
    result = asyncio.run(smoke.smoke_test(smoke.SmokeRequest(
        model=str(unrepaired_f16), messages=messages, max_tokens=8, expected_prompt=text,
        expected_ids=ids, end_of_turn="<|im_end|>"), timeout=300))
    assert not result.passed and not result.answer
    assert ("was killed by SIG" in result.failure
            or "tokenises the prompt differently" in result.failure), result.failure


def test_quantizer_crash_after_one_output_keeps_that_output(unrepaired_f16, tmp_path):
    outputs = {"q8_0": tmp_path / "q8_0.gguf", "q4_0": tmp_path / "missing" / "dir" / "q4_0.gguf"}
    done: list[str] = []

    async def run():
        async for quant, path in gguf.quantize(unrepaired_f16, outputs, timeout=120, threads=2):
            assert path.is_file()
            done.append(quant)

    with pytest.raises(gguf.ToolFailed):
        asyncio.run(run())
    assert done == ["q8_0"]


def test_failure_midway_delivers_what_was_made(tiny_llama_dir, tiny_adapter, tmp_path):
    """A converter that fails: the adapter and merged model are still uploaded and listed,
    and the manifest names the stage and the reason."""
    fake = tmp_path / "converter"
    (fake / "gguf-py" / "gguf").mkdir(parents=True)
    (fake / "gguf-py" / "gguf" / "__init__.py").write_text("")
    (fake / "convert_lora_to_gguf.py").write_text("")
    (fake / "convert_hf_to_gguf.py").write_text(
        "import sys\nprint('ERROR: out of cheese', file=sys.stderr)\nsys.exit(3)\n")
    settings = settings_for(tmp_path, converter_dir=fake)
    store = LocalStore(tmp_path / "store")
    ref = store.put_dir("jobs/midway/adapter/", tiny_adapter)
    job = ExportJob(job_id="midway", adapter_uri=ref.uri, adapter_sha256=ref.sha256,
                    base_model=str(tiny_llama_dir))

    async def run():
        return [e async for e in Exporter(settings, store).export(job)]

    *progress, result = asyncio.run(run())
    assert progress[-1].detail == "writing manifest.json"
    assert not result.complete and result.failed_stage == Stage.CONVERT
    assert "exited with status 3" in result.failure and "out of cheese" in result.failure
    assert [f.output for f in result.files] == [Output.ADAPTER, Output.MERGED_MODEL]
    keys = list(store.list("jobs/midway/"))
    assert "jobs/midway/manifest.json" in keys and "jobs/midway/merged/model.safetensors" in keys
    assert not [k for k in keys if "/gguf/" in k or k.endswith("Modelfile")]
    assert not list((tmp_path / "work").iterdir())  # scratch space removed
    shutil.rmtree(tmp_path / "store")


def test_a_second_export_beyond_capacity_is_resource_exhausted(tmp_path):
    from services.common.errors import ResourceExhausted

    settings = settings_for(tmp_path, max_concurrent_exports=1)
    exporter = Exporter(settings, LocalStore(tmp_path / "store"))
    job = ExportJob(job_id="busy", adapter_uri="file:///nowhere/", base_model="x")

    async def run():
        first = exporter.export(job)
        await first.__anext__()  # running: its first progress event is out
        with pytest.raises(ResourceExhausted):
            await exporter.export(job).__anext__()
        await first.aclose()
        second = exporter.export(job)  # the slot is free again
        assert (await second.__anext__()).stage == Stage.ADAPTER
        await second.aclose()

    asyncio.run(run())
