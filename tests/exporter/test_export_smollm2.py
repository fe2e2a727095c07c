"""The real student: a SmolLM2-135M-Instruct adapter exported over gRPC, every GGUF smoke-tested.

Unlike the tiny random model, SmolLM2 has learned to end its turn, so here the smoke tests must
pass: each GGUF loads, answers the dataset prompt through the chat template and stops at
<|im_end|> well before the token limit. The adapter is random but small (B scaled down), so it
changes the logits measurably without wrecking the model's behaviour.
"""

from __future__ import annotations

import pytest

from distill.v1 import common_pb2, exporter_pb2
from services.common.models import prepare_smollm2
from services.common.storage import LocalStore
from services.exporter import modelfile
from tests.exporter.helpers import make_adapter, settings_for
from tests.fixtures.tiny_llama import shared_cache_dir

pytestmark = pytest.mark.slow

MAX_TOKENS = 64
# A dataset row of a labelling task (the reference answer is dropped for the smoke test).
PROMPT = ("Classify the sentiment of this review as positive or negative: "
          "'The food was cold and the waiter was rude.'")


@pytest.fixture(scope="module")
def smollm2() -> object:
    return prepare_smollm2(shared_cache_dir())


@pytest.fixture(scope="module")
def export(exporter_server, smollm2, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export-smollm2")
    adapter = make_adapter(smollm2, tmp / "adapter", r=8, scale=0.02)
    settings = settings_for(tmp)
    store = LocalStore(tmp / "store")
    ref = store.put_dir("jobs/smol-1/adapter/", adapter)  # where the trainer leaves it
    request = exporter_pb2.ExportRequest(
        job_id="smol-1",
        adapter=common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256),
        base_model="smollm2-135m",  # the registry shortcut, resolved offline
        settings=common_pb2.ExportSettings(smoke_max_tokens=MAX_TOKENS),
        smoke_prompts=[common_pb2.Prompt(id="line-1", messages=[
            common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=PROMPT),
            common_pb2.ChatMessage(role=common_pb2.ROLE_ASSISTANT, content="negative"),
        ])],
    )
    events = list(exporter_server(settings).Export(request, timeout=900))
    return {"events": events, "store": store, "adapter": adapter, "tmp": tmp}


def test_export_is_complete_and_every_gguf_stops(export):
    manifest = export["events"][-1].manifest
    assert manifest.complete, manifest.failure
    assert manifest.failed_stage == exporter_pb2.EXPORT_STAGE_UNSPECIFIED
    ggufs = {common_pb2.QuantizationType.Name(f.quantization): f.smoke_test
             for f in manifest.files if f.output == exporter_pb2.EXPORT_OUTPUT_GGUF}
    assert set(ggufs) == {"QUANTIZATION_TYPE_F16", "QUANTIZATION_TYPE_Q8_0",
                          "QUANTIZATION_TYPE_Q4_K_M"}  # f16 plus the default quantizations
    for name, smoke in ggufs.items():
        assert smoke.passed and smoke.stopped_at_eos, (name, smoke)
        assert 0 < smoke.tokens < MAX_TOKENS and smoke.answer.strip()
        assert smoke.prompt == PROMPT
        assert not smoke.failure


def test_adapter_in_place_is_listed_not_copied(export):
    manifest = export["events"][-1].manifest
    adapter = next(f for f in manifest.files if f.output == exporter_pb2.EXPORT_OUTPUT_ADAPTER)
    store = export["store"]
    assert store.key_from_uri(adapter.artifact.uri) == "jobs/smol-1/adapter/"
    names = sorted(k.rsplit("/", 1)[1] for k in store.list("jobs/smol-1/adapter/"))
    assert names == ["README.md", "adapter_config.json", "adapter_model.safetensors"]


def test_merged_model_matches_base_plus_adapter(export, smollm2):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir = export["tmp"] / "merged"
    export["store"].get_dir("jobs/smol-1/merged/", merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    ids = tokenizer("Distillation makes small models useful.", return_tensors="pt")
    with torch.inference_mode():
        base = AutoModelForCausalLM.from_pretrained(smollm2).eval()
        base_logits = base(**ids).logits
        expected = PeftModel.from_pretrained(base, export["adapter"]).eval()(**ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, use_safetensors=True).eval()
        got = merged(**ids).logits
    error = (got - expected).abs().max().item()
    assert error < 1e-2 * expected.abs().max().item()
    assert (expected - base_logits).abs().max().item() > 10 * error


def test_modelfile_points_at_the_smallest_passing_gguf(export):
    parsed = modelfile.parse(export["store"].get_bytes("jobs/smol-1/Modelfile").decode())
    assert parsed.from_ == "./gguf/q4_k_m.gguf"
    assert "<|im_end|>" in parsed.parameters["stop"]
    assert parsed.system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
