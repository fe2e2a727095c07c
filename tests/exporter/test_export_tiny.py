"""The whole export of the tiny random Llama + LoRA over gRPC: real converter, quantizer, smoke.

A tiny random model has no reason ever to emit <|im_end|>, so the honest expectation is that every
GGUF loads, generates up to the limit, and the smoke test REPORTS that it did not stop: the
export is delivered but marked incomplete at the smoke-test stage. (The SmolLM2 test checks the
passing side.) The merged GGUF's logits are compared with base + adapter computed by PEFT.
"""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest

from distill.v1 import common_pb2, exporter_pb2
from services.common.storage import LocalStore
from services.exporter import modelfile
from services.exporter.gguf import Converter
from tests.exporter.helpers import settings_for

MAX_TOKENS = 12
DATASET_ROW = common_pb2.Prompt(
    id="line-1",
    messages=[
        common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="Label the review: great movie"),
        common_pb2.ChatMessage(role=common_pb2.ROLE_ASSISTANT, content="positive"),
    ],
)


def _request(job_id, adapter_ref, base, **settings):
    return exporter_pb2.ExportRequest(
        job_id=job_id,
        adapter=common_pb2.ArtifactRef(uri=adapter_ref.uri, sha256=adapter_ref.sha256),
        base_model=str(base),
        settings=common_pb2.ExportSettings(**settings),
        smoke_prompts=[DATASET_ROW],
    )


@pytest.fixture(scope="module")
def export(exporter_server, tiny_llama_dir, tiny_adapter, tmp_path_factory):
    """One full export over gRPC; every later test reads its events and the store."""
    tmp = tmp_path_factory.mktemp("export-tiny")
    settings = settings_for(tmp)
    Converter.locate(settings.converter_dir)  # a missing converter fails loudly, not skipped
    store = LocalStore(tmp / "store")
    adapter_ref = store.put_dir("jobs/tiny-1/adapter/", tiny_adapter)  # where training leaves it
    stub = exporter_server(settings)
    request = _request("tiny-1", adapter_ref, tiny_llama_dir, lora_gguf=True,
                       smoke_max_tokens=MAX_TOKENS,
                       quantizations=[common_pb2.QUANTIZATION_TYPE_Q8_0,
                                      common_pb2.QUANTIZATION_TYPE_Q4_K_M])
    events = list(stub.Export(request, timeout=600))
    return {"events": events, "store": store, "stub": stub, "tmp": tmp,
            "adapter_ref": adapter_ref, "adapter_dir": tiny_adapter, "settings": settings}


def _manifest(export):
    *progress, last = export["events"]
    assert all(e.WhichOneof("event") == "progress" for e in progress)
    assert last.WhichOneof("event") == "manifest"
    return last.manifest


def _by_name(manifest):
    named = {}
    for f in manifest.files:
        name = exporter_pb2.ExportOutput.Name(f.output)
        if f.output == exporter_pb2.EXPORT_OUTPUT_GGUF:
            name = common_pb2.QuantizationType.Name(f.quantization)
        named[name] = f
    return named


def test_progress_goes_through_every_stage_in_order(export):
    stages = [e.progress.stage for e in export["events"][:-1]]
    firsts = [s for i, s in enumerate(stages) if s not in stages[:i]]
    assert firsts == [exporter_pb2.EXPORT_STAGE_ADAPTER, exporter_pb2.EXPORT_STAGE_MERGE,
                      exporter_pb2.EXPORT_STAGE_CONVERT, exporter_pb2.EXPORT_STAGE_SMOKE_TEST,
                      exporter_pb2.EXPORT_STAGE_QUANTIZE, exporter_pb2.EXPORT_STAGE_LORA_GGUF,
                      exporter_pb2.EXPORT_STAGE_MODELFILE]
    assert all(e.progress.detail for e in export["events"][:-1])


def test_manifest_lists_every_file_with_checksums(export):
    manifest, store = _manifest(export), export["store"]
    named = _by_name(manifest)
    assert set(named) == {"EXPORT_OUTPUT_ADAPTER", "EXPORT_OUTPUT_MERGED_MODEL",
                          "QUANTIZATION_TYPE_F16", "QUANTIZATION_TYPE_Q8_0",
                          "QUANTIZATION_TYPE_Q4_K_M", "EXPORT_OUTPUT_LORA_GGUF",
                          "EXPORT_OUTPUT_MODELFILE"}
    keys = {f.artifact.uri: store.key_from_uri(f.artifact.uri) for f in manifest.files}
    assert sorted(keys.values()) == [
        "jobs/tiny-1/Modelfile", "jobs/tiny-1/adapter/", "jobs/tiny-1/gguf/f16.gguf",
        "jobs/tiny-1/gguf/lora-f16.gguf", "jobs/tiny-1/gguf/q4_k_m.gguf",
        "jobs/tiny-1/gguf/q8_0.gguf", "jobs/tiny-1/merged/"]
    for f in manifest.files:
        key = keys[f.artifact.uri]
        if key.endswith("/"):
            assert f.artifact.media_type == "inode/directory"
            assert f.artifact.sha256 == store.get_dir(key, export["tmp"] / "check" / key).sha256
        else:
            data = store.get_bytes(key)
            assert f.artifact.sha256 == hashlib.sha256(data).hexdigest()
            assert f.artifact.size_bytes == len(data) > 0
    # manifest.json in the store says the same, and lists each file of the folders.
    ref = manifest.manifest
    assert store.key_from_uri(ref.uri) == "jobs/tiny-1/manifest.json"
    stored = json.loads(store.get_bytes("jobs/tiny-1/manifest.json"))
    assert stored["complete"] is False and stored["failed_stage"] == "smoke_test"
    assert [f["sha256"] for f in stored["files"]] == [f.artifact.sha256 for f in manifest.files]
    merged = next(f for f in stored["files"] if f["output"] == "merged_model")
    assert set(merged["files"]) >= {"model.safetensors", "config.json", "tokenizer.json"}
    loose = [k for k in store.list("jobs/tiny-1/") if "/adapter/" not in k and "/merged/" not in k]
    assert loose == ["jobs/tiny-1/Modelfile", "jobs/tiny-1/gguf/f16.gguf",
                     "jobs/tiny-1/gguf/lora-f16.gguf", "jobs/tiny-1/gguf/q4_k_m.gguf",
                     "jobs/tiny-1/gguf/q8_0.gguf", "jobs/tiny-1/manifest.json"]


def test_smoke_test_reports_that_a_random_model_does_not_stop(export):
    manifest = _manifest(export)
    assert not manifest.complete
    assert manifest.failed_stage == exporter_pb2.EXPORT_STAGE_SMOKE_TEST
    assert "f16.gguf" in manifest.failure and "did not stop at end-of-turn" in manifest.failure
    ggufs = [f for f in manifest.files if f.HasField("smoke_test")]
    assert len(ggufs) == 4  # f16, q8_0, q4_k_m and the LoRA GGUF: every one was run
    for f in ggufs:
        smoke = f.smoke_test
        # Loaded, formatted the dataset prompt (reference answer dropped), generated to the limit.
        assert smoke.prompt == "Label the review: great movie"
        assert smoke.tokens == MAX_TOKENS and smoke.answer.strip()
        assert not smoke.stopped_at_eos and not smoke.passed
        assert f"within {MAX_TOKENS} tokens" in smoke.failure and "<|im_end|>" in smoke.failure


def test_ggufs_carry_the_right_tokenizer_and_template(export, tiny_llama_dir):
    from llama_cpp import Llama

    store, tmp = export["store"], export["tmp"]
    file_types = {"f16": "1", "q8_0": "7", "q4_k_m": "15"}
    template = (tiny_llama_dir / "chat_template.jinja").read_text()
    for quant, file_type in file_types.items():
        path = tmp / f"{quant}.gguf"
        store.get_file(f"jobs/tiny-1/gguf/{quant}.gguf", path)
        metadata = Llama(model_path=str(path), vocab_only=True, verbose=False).metadata
        assert metadata["general.file_type"] == file_type
        # Byte-level BPE as upstream SmolLM2 (not misread as SentencePiece).
        assert metadata["tokenizer.ggml.model"] == "gpt2"
        assert metadata["tokenizer.ggml.pre"] == "smollm"
        assert metadata["tokenizer.ggml.eos_token_id"] == "2"  # <|im_end|>
        assert metadata["tokenizer.chat_template"] == template
        assert metadata["general.name"] == "distill-tiny-1"


def test_merged_gguf_computes_base_plus_adapter(export, tiny_llama_dir, tiny_adapter):
    """llama.cpp's logits on the f16 GGUF equal PEFT's base + adapter within f16 rounding."""
    import numpy as np
    import torch
    from llama_cpp import Llama
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ids = tokenizer("The student learns from the teacher.")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    with torch.inference_mode():
        base_logits = base(torch.tensor([ids])).logits[0].numpy()
        model = PeftModel.from_pretrained(base, tiny_adapter).eval()
        expected = model(torch.tensor([ids])).logits[0].numpy()
    llm = Llama(model_path=str(export["tmp"] / "f16.gguf"), n_ctx=64, logits_all=True,
                verbose=False, seed=0)
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)])
    error = np.abs(got - expected).max()
    assert error < 2e-2, error
    assert np.abs(expected - base_logits).max() > 10 * error  # the adapter is really in there


def test_modelfile_parses_and_matches_the_chat_template(export, tiny_llama_dir):
    from transformers import AutoTokenizer

    text = export["store"].get_bytes("jobs/tiny-1/Modelfile").decode()
    parsed = modelfile.parse(text)
    assert parsed.from_ == "./gguf/q4_k_m.gguf"
    assert parsed.parameters["stop"][0] == "<|im_end|>"
    assert parsed.system.startswith("You are a helpful AI assistant named SmolLM")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    messages = [{"role": "user", "content": "Label the review: great movie"},
                {"role": "assistant", "content": "positive"},
                {"role": "user", "content": "Label the review: awful plot"}]
    expected = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=True)
    sent = [{"role": "system", "content": parsed.system}, *messages]  # what Ollama sends
    assert modelfile.render_go_template(parsed.template, sent) == expected


def _assert_invalid_and_nothing_written(export, request, fragment):
    before = list(export["store"].list())
    with pytest.raises(grpc.RpcError) as raised:
        list(export["stub"].Export(request, timeout=120))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert fragment in raised.value.details()
    assert list(export["store"].list()) == before  # nothing written, nothing deleted
    # The job's folder holds its adapter (an exporter reads only its own job's) and no output.
    assert not [k for k in before if k.startswith(f"jobs/{request.job_id}/")
                and not k.startswith(f"jobs/{request.job_id}/adapter/")]


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x08" + b"\0" * 40),
         "not a valid safetensors file"),
        (lambda d: (d / "adapter_config.json").unlink(), "adapter_config.json is missing"),
        (lambda d: (d / "adapter_model.bin").write_bytes(b"\x80\x04K\x01."), "pickle"),
    ],
    ids=["bad-safetensors", "no-config", "pickle"],
)
def test_corrupt_adapter_is_invalid_and_leaves_nothing(export, tiny_llama_dir, tiny_adapter,
                                                       damage, fragment):
    import shutil

    bad = export["tmp"] / f"bad-{fragment[:8].replace(' ', '-')}"
    shutil.copytree(tiny_adapter, bad)
    damage(bad)
    ref = export["store"].put_dir(f"jobs/bad-{bad.name}/adapter/", bad)
    request = _request(f"bad-{bad.name}", ref, tiny_llama_dir)
    _assert_invalid_and_nothing_written(export, request, fragment)


@pytest.mark.filterwarnings("ignore:The PEFT config's `base_model_name_or_path`")
def test_shape_mismatch_at_the_trainer_location_keeps_the_input(export, tiny_llama_dir,
                                                                  tmp_path):
    """An adapter for another model, stored where the trainer writes it (jobs/{id}/adapter/):
    INVALID_ARGUMENT, and the export neither adds to nor deletes from the job's folder."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.exporter.helpers import make_adapter
    from tests.fixtures.tiny_llama import make_tiny_llama

    other = make_tiny_llama(tmp_path / "other", tokenizer_dir=tiny_llama_dir)
    config = AutoConfig.from_pretrained(other)
    config.intermediate_size = 96  # same module names, other shapes
    AutoModelForCausalLM.from_config(config).save_pretrained(other)
    adapter = make_adapter(other, tmp_path / "adapter")
    store = export["store"]
    ref = store.put_dir("jobs/mismatch/adapter/", adapter)
    before = sorted(store.list("jobs/mismatch/"))
    with pytest.raises(grpc.RpcError) as raised:
        list(export["stub"].Export(_request("mismatch", ref, tiny_llama_dir), timeout=120))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has shape" in raised.value.details()
    assert sorted(store.list("jobs/mismatch/")) == before


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"job_id": "../escape"}, "job_id"),
        ({"job_id": ""}, "job_id"),
        ({"adapter": common_pb2.ArtifactRef()}, "adapter.uri"),
        ({"base_model": ""}, "base_model"),
        ({"settings": common_pb2.ExportSettings(smoke_max_tokens=0)}, "smoke_max_tokens"),
        ({"settings": common_pb2.ExportSettings(quantizations=[0])}, "quantizations"),
        ({"adapter": common_pb2.ArtifactRef(uri="file:///elsewhere/adapter/")}, "not in this"),
    ],
)
def test_bad_requests_are_invalid(export, tiny_llama_dir, change, fragment):
    request = _request("bad-request", export["adapter_ref"], tiny_llama_dir)
    for field, value in change.items():
        if isinstance(value, str):
            setattr(request, field, value)
        else:
            getattr(request, field).CopyFrom(value)
    _assert_invalid_and_nothing_written(export, request, fragment)


def test_smoke_test_compares_llama_cpp_tokens_with_the_tokenizer(export, tiny_llama_dir):
    """The same GGUF, told that training saw one token differently, fails on tokenisation."""
    import asyncio

    from transformers import AutoTokenizer

    from services.exporter import smoke

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    messages = [{"role": "user", "content": "Label the review: great movie"}]
    text, ids = smoke.expected_prompt(tokenizer, messages)
    ids[3] += 1
    result = asyncio.run(smoke.smoke_test(smoke.SmokeRequest(
        model=str(export["tmp"] / "f16.gguf"), messages=messages, max_tokens=4,
        expected_prompt=text, expected_ids=ids, end_of_turn="<|im_end|>"), timeout=300))
    assert not result.passed
    assert "tokenises the prompt differently" in result.failure
    assert "first difference at token 3" in result.failure


def test_include_base_exports_the_untrained_model_once_per_base(export, tiny_llama_dir):
    """The base GGUF computes the base model (not the merge) and a second job reuses it."""
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stub, store = export["stub"], export["store"]

    def run(job_id):
        adapter = store.put_dir(f"jobs/{job_id}/adapter/", export["adapter_dir"])
        request = _request(job_id, adapter, tiny_llama_dir, smoke_max_tokens=4,
                           merged_model=False, ollama_modelfile=False,
                           quantizations=[common_pb2.QUANTIZATION_TYPE_Q8_0])
        request.include_base = True
        events = list(stub.Export(request, timeout=600))
        manifest = events[-1].manifest
        bases = [f for f in manifest.files if f.output == exporter_pb2.EXPORT_OUTPUT_BASE_GGUF]
        assert len(bases) == 1
        assert bases[0].quantization == common_pb2.QUANTIZATION_TYPE_Q8_0
        return bases[0], [e.progress.detail for e in events[:-1]]

    first, details = run("tiny-base-1")
    key = store.key_from_uri(first.artifact.uri)
    assert key.startswith("models/base/") and key.endswith("/q8_0.gguf")
    assert any("untrained base" in d for d in details)

    path = export["tmp"] / "base-q8_0.gguf"
    store.get_file(key, path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ids = tokenizer("The student learns from the teacher.")["input_ids"]
    with torch.inference_mode():
        expected = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()(
            torch.tensor([ids])).logits[0].numpy()
    llm = Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False, seed=0)
    llm.eval(ids)
    assert np.abs(np.asarray(llm.scores[: len(ids)]) - expected).max() < 5e-2

    second, details = run("tiny-base-2")
    assert second.artifact.uri == first.artifact.uri
    assert second.artifact.sha256 == first.artifact.sha256
    assert any("reusing" in d for d in details)
    assert not any("untrained base model (f16)" in d for d in details)
