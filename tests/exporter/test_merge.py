"""Adapter validation against the base model, and the merge: logits, tokenizer, EOS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from services.common.errors import InvalidArgument
from services.exporter import merge
from tests.exporter.helpers import make_adapter

PROMPTS = ["Distill the teacher.", "12 + 30 = 42, and the answer is"]


@pytest.fixture
def adapter(tiny_adapter: Path, tmp_path: Path) -> Path:
    """A private copy of the session adapter that a test may damage."""
    return Path(shutil.copytree(tiny_adapter, tmp_path / "adapter"))


def test_valid_adapter(tiny_llama_dir, adapter):
    info = merge.validate_adapter(adapter, tiny_llama_dir)
    assert info.rank == 4 and info.tensors == 2 * 7 * 2  # A and B, 7 projections, 2 layers
    assert "q_proj" in info.target_modules


def _damage_tensor(adapter: Path, fn) -> None:
    path = adapter / merge.ADAPTER_WEIGHTS
    tensors = load_file(path)
    name = sorted(tensors)[0]
    tensors[name] = fn(tensors[name])
    save_file(tensors, path)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda a: (a / merge.ADAPTER_CONFIG).unlink(), "adapter_config.json is missing"),
        (lambda a: (a / merge.ADAPTER_CONFIG).write_text("{not json"), "not valid JSON"),
        (lambda a: (a / merge.ADAPTER_CONFIG).write_text('{"peft_type": "IA3"}'), "only LoRA"),
        (lambda a: (a / merge.ADAPTER_WEIGHTS).unlink(), "adapter_model.safetensors is missing"),
        (lambda a: (a / merge.ADAPTER_WEIGHTS).write_bytes(
            (a / merge.ADAPTER_WEIGHTS).read_bytes()[:-100]), "not a valid safetensors"),
        (lambda a: (a / merge.ADAPTER_WEIGHTS).write_bytes(b"\0" * 64), "not a valid safetensors"),
        (lambda a: _damage_tensor(a, lambda t: torch.zeros(t.shape[0] + 1, t.shape[1])),
         "has shape"),
        (lambda a: _damage_tensor(a, lambda t: t.fill_(float("nan"))), "NaN"),
        (lambda a: (a / "adapter_model.bin").write_bytes(b"x"), "pickle"),
    ],
    ids=["no-config", "bad-json", "not-lora", "no-weights", "truncated", "garbage",
         "shape-mismatch", "nan", "pickle"],
)
def test_corrupt_adapters_are_invalid(tiny_llama_dir, adapter, damage, fragment):
    damage(adapter)
    with pytest.raises(InvalidArgument) as raised:
        merge.validate_adapter(adapter, tiny_llama_dir)
    assert fragment in str(raised.value)


def test_adapter_for_another_architecture_is_invalid(tiny_llama_dir, adapter):
    config = json.loads((adapter / merge.ADAPTER_CONFIG).read_text())
    config["target_modules"] = ["c_attn"]  # GPT-2's projection: not in a Llama
    (adapter / merge.ADAPTER_CONFIG).write_text(json.dumps(config))
    with pytest.raises(InvalidArgument) as raised:
        merge.validate_adapter(adapter, tiny_llama_dir)
    assert "does not fit base model" in str(raised.value)


def test_missing_and_extra_tensors_are_invalid(tiny_llama_dir, adapter):
    tensors = load_file(adapter / merge.ADAPTER_WEIGHTS)
    name = sorted(tensors)[0]
    tensors[name.replace("layers.0", "layers.7")] = tensors.pop(name)
    save_file(tensors, adapter / merge.ADAPTER_WEIGHTS)
    with pytest.raises(InvalidArgument) as raised:
        merge.validate_adapter(adapter, tiny_llama_dir)
    assert "missing 1 tensors" in str(raised.value) and "no place for" in str(raised.value)


def _logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.inference_mode():
        return model(**batch).logits.float()


def test_merged_model_matches_base_plus_adapter(tiny_llama_dir, tiny_adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = tmp_path / "merged"
    merge.merge_adapter(tiny_llama_dir, tiny_adapter, out)
    assert merge.chat_info(out).end_of_turn == "<|im_end|>"

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    base_logits = _logits(base, tokenizer)
    with_adapter = _logits(PeftModel.from_pretrained(base, tiny_adapter).eval(), tokenizer)
    merged = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True).eval()
    merged_logits = _logits(merged, tokenizer)

    assert torch.allclose(merged_logits, with_adapter, atol=1e-5, rtol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 1e-2  # the adapter really changed it

    assert sorted(p.name for p in out.iterdir()) == [
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json"]
    merged_tokenizer = AutoTokenizer.from_pretrained(out)
    im_end = merged_tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = GenerationConfig.from_pretrained(out).eos_token_id
    assert im_end in ([eos] if isinstance(eos, int) else eos)
    assert merged_tokenizer.chat_template == tokenizer.chat_template
    text = " hello world\n\n  Ünïcödé 😀 <|im_start|>user\nhi<|im_end|>"
    assert merged_tokenizer.encode(text) == tokenizer.encode(text)


def test_byte_level_tokenizer_is_repaired_for_llama_cpp(tiny_llama_dir, tmp_path):
    shutil.copy(tiny_llama_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    before = json.loads((tmp_path / "tokenizer.json").read_text())
    assert before["model"]["byte_fallback"]  # what transformers' GGUF import writes
    assert merge.repair_byte_level_bpe(tmp_path / "tokenizer.json")
    after = json.loads((tmp_path / "tokenizer.json").read_text())
    assert after["model"]["byte_fallback"] is False and after["decoder"]["type"] == "ByteLevel"
    assert not merge.repair_byte_level_bpe(tmp_path / "tokenizer.json")  # idempotent


def test_zero_adapter_merges_into_exactly_the_base_model(tiny_llama_dir, tmp_path):
    """A zero adapter merges into exactly the base model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    zero = make_adapter(tiny_llama_dir, tmp_path / "zero", scale=0.0)
    merge.merge_adapter(tiny_llama_dir, zero, tmp_path / "merged")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    base = _logits(AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval(), tokenizer)
    merged = _logits(AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval(), tokenizer)
    assert torch.equal(base, merged)


def _tokenizer_only(tiny_llama_dir: Path, dest: Path, template: str | None) -> Path:
    dest.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_llama_dir / name, dest / name)
    if template is not None:
        (dest / "chat_template.jinja").write_text(template)
    return dest


def test_untranslatable_template_still_exports_without_a_modelfile(tiny_llama_dir, tmp_path):
    refusing = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                "{{ raise_exception('no system role') }}{% endif %}"
                "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                "{% endif %}")
    info = merge.chat_info(_tokenizer_only(tiny_llama_dir, tmp_path / "t", refusing))
    assert info.fmt is None and info.end_of_turn == "<|im_end|>"  # falls back to EOS
    assert "turn-by-turn shape" in info.problem


def test_base_without_chat_template_is_refused(tiny_llama_dir, tmp_path):
    from services.common.errors import FailedPrecondition

    folder = _tokenizer_only(tiny_llama_dir, tmp_path / "t", None)
    with pytest.raises(FailedPrecondition) as raised:
        merge.chat_info(folder)
    assert "no chat template" in str(raised.value)
