"""Model registry: lookups, prices, VRAM bands, offline student resolution, the SmolLM2 cache.

The SmolLM2 conversion test and the tiny-Llama fixture use the shared distill cache
(~/.cache/distill, or DISTILL_CACHE_DIR) rather than a temp dir: the dequantise takes about a
minute, and `make setup` has usually done it already. The cache logic itself (marker keys,
atomic rename, locking) is tested on a fake build in a temp dir.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import grpc
import pytest

from services.common import models
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.models import (
    MARKER_FILE,
    cost_usd,
    ensure_cached_dir,
    get_model,
    list_models,
    packaged_smollm2_gguf,
    price_for,
    resolve_student,
    vram_required_gb,
)
from tests.fixtures.tiny_llama import (  # noqa: F401 - tiny_llama_dir is a pytest fixture
    make_tiny_llama,
    shared_cache_dir,
    tiny_llama_dir,
)

# -- registry ---------------------------------------------------------------------------------


def test_get_model_by_shortcut_and_by_model_id():
    m = get_model("smollm2-135m")
    assert (m.kind, m.provider) == ("student", "hf")
    assert m.model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert 130e6 < m.param_count < 140e6
    assert get_model("Qwen/Qwen3-0.6B").name == "qwen3-0.6b"
    assert get_model("QWEN/qwen3-0.6b").name == "qwen3-0.6b"  # ids are case-insensitive on the hub
    assert get_model("claude-sonnet").provider == "anthropic"


def test_unknown_model_suggests_the_closest_and_lists_all():
    with pytest.raises(NotFound) as info:
        get_model("smolm2-135")
    message = str(info.value)
    assert "did you mean 'smollm2-135m'" in message
    assert "gpt-4o-mini" in message and "llama-3.1-8b" in message  # the known names
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert isinstance(info.value, LookupError)


def test_entries_are_frozen_unique_and_complete():
    names = [m.name for m in models.MODELS]
    assert len(names) == len(set(names))
    for m in models.MODELS:
        assert m.context_length > 0
        if m.is_student:
            assert m.param_count and m.provider == "hf"
        if m.provider in ("openai", "anthropic"):
            assert m.input_usd_per_mtok > 0 and m.output_usd_per_mtok > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model("gpt-4o").input_usd_per_mtok = 0.0


def test_list_models_by_kind():
    students = {m.name for m in list_models("student")}
    teachers = {m.name for m in list_models("teacher")}
    assert students == {
        "smollm2-135m",
        "smollm2-360m",
        "qwen3-0.6b",
        "qwen3-1.7b",
        "llama-3.2-1b",
        "llama-3.2-3b",
        "llama-3.1-8b",
    }
    assert {
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "claude-sonnet",
        "claude-haiku",
        "claude-opus",
        "smollm2-135m-gguf",
    } == teachers
    assert len(list_models()) == len(students | teachers)
    with pytest.raises(InvalidArgument, match="kind"):
        list_models("judge")


# -- prices -----------------------------------------------------------------------------------


def test_registry_price_and_cost():
    assert price_for("gpt-4o") == models.Price(2.50, 10.00, "registry")
    assert cost_usd("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.50)
    assert cost_usd("gpt-4o-mini", 2_000, 500) == pytest.approx((2_000 * 0.15 + 500 * 0.60) / 1e6)
    assert cost_usd("claude-sonnet-4-5", 1_000, 1_000) == cost_usd("claude-sonnet", 1_000, 1_000)


def test_self_hosted_models_are_free_and_known():
    assert price_for("smollm2-135m-gguf") == models.Price(0.0, 0.0, "registry")
    assert price_for("qwen3-0.6b") == models.Price(0.0, 0.0, "self-hosted")
    assert price_for("qwen3-0.6b").known


def test_overrides_win_and_match_any_name_of_the_model():
    overrides = {"gpt-4o": (1.0, 2.0), "claude-opus-4-5": (10, 20), "my-vllm-model": (0.1, 0.2)}
    assert price_for("gpt-4o", overrides) == models.Price(1.0, 2.0, "override")
    assert price_for("claude-opus", overrides).source == "override"  # keyed by model id
    assert cost_usd("my-vllm-model", 1_000_000, 0, overrides) == pytest.approx(0.1)
    assert price_for("gpt-4.1", overrides).source == "registry"


def test_unknown_model_costs_zero_and_says_so():
    price = price_for("some-new-model")
    assert (price.input_usd_per_mtok, price.output_usd_per_mtok, price.known) == (0, 0, False)
    assert cost_usd("some-new-model", 10**6, 10**6) == 0.0


@pytest.mark.parametrize("bad", [(1.0,), (-1.0, 2.0), ("1", "2"), (float("nan"), 1.0), None])
def test_bad_override_is_invalid_argument(bad):
    with pytest.raises(InvalidArgument, match="gpt-4o"):
        price_for("gpt-4o", {"gpt-4o": bad})


def test_negative_tokens_are_invalid():
    with pytest.raises(InvalidArgument):
        cost_usd("gpt-4o", -1, 0)


# -- VRAM -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "gb"),
    [
        (135e6, 4),
        (599_999_999, 4),
        (600e6, 8),
        (1.0e9, 8),
        (1.24e9, 8),
        (1.7e9, 16),
        (3.21e9, 16),
        (8.03e9, 24),
        (8.99e9, 24),
        (13e9, 28),
        (70e9, 85),
    ],
)
def test_vram_bands(params, gb):
    assert vram_required_gb(int(params)) == gb


def test_vram_of_registry_students_follows_the_issue_table():
    by_name = {m.name: vram_required_gb(m.param_count) for m in list_models("student")}
    assert by_name["qwen3-0.6b"] == by_name["llama-3.2-1b"] == 8
    assert by_name["llama-3.2-3b"] == 16
    assert by_name["llama-3.1-8b"] == 24


def test_vram_rejects_nonpositive():
    with pytest.raises(InvalidArgument):
        vram_required_gb(0)


# -- student resolution -----------------------------------------------------------------------


def _fake_hf_cache(root: Path, repo_id: str, with_weights: bool = True) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<sha>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "config.json").write_text("{}")
    if with_weights:
        (snapshot / "model.safetensors").write_bytes(b"")
    return snapshot


def test_resolve_local_folder_returns_it(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_student(tmp_path, tmp_path / "cache") == tmp_path.resolve()
    assert resolve_student(str(tmp_path), tmp_path / "cache") == tmp_path.resolve()


def test_resolve_folder_without_config_is_failed_precondition(tmp_path):
    with pytest.raises(FailedPrecondition, match=r"config\.json"):
        resolve_student(tmp_path, tmp_path / "cache")


def test_resolve_missing_path_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="no model folder"):
        resolve_student(tmp_path / "nope", tmp_path / "cache")


def test_resolve_unknown_name_suggests_a_student(tmp_path):
    with pytest.raises(NotFound, match=r"did you mean 'qwen3-0\.6b'"):
        resolve_student("qwen3-0.6", tmp_path / "cache", hf_cache_dir=tmp_path / "hub")


def test_resolve_teacher_is_invalid_argument(tmp_path):
    with pytest.raises(InvalidArgument, match="teacher"):
        resolve_student("gpt-4o", tmp_path / "cache")


def test_resolve_from_hf_cache_by_shortcut_and_by_id(tmp_path):
    hub = tmp_path / "hub"
    snapshot = _fake_hf_cache(hub, "Qwen/Qwen3-0.6B")
    assert resolve_student("qwen3-0.6b", tmp_path / "cache", hf_cache_dir=hub) == snapshot
    assert resolve_student("Qwen/Qwen3-0.6B", tmp_path / "cache", hf_cache_dir=hub) == snapshot


def test_resolve_prefers_hf_cache_over_converting_smollm2(tmp_path):
    hub = tmp_path / "hub"
    snapshot = _fake_hf_cache(hub, models.SMOLLM2_ID)
    assert resolve_student("smollm2-135m", tmp_path / "cache", hf_cache_dir=hub) == snapshot
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("name", ["llama-3.2-1b", "someorg/some-model"])
def test_resolve_uncached_is_failed_precondition_saying_how(tmp_path, name):
    hub = tmp_path / "hub"
    _fake_hf_cache(hub, "meta-llama/Llama-3.2-1B-Instruct", with_weights=False)  # half download
    with pytest.raises(FailedPrecondition) as info:
        resolve_student(name, tmp_path / "cache", hf_cache_dir=hub)
    assert "huggingface-cli download" in str(info.value)
    assert "local Hugging Face model folder" in str(info.value)


def test_packaged_gguf_is_found():
    path = packaged_smollm2_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50e6


def test_packaged_gguf_missing_says_make_setup(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FailedPrecondition, match="make setup"):
        packaged_smollm2_gguf()


# -- the cache folder logic, on a fake build -----------------------------------------------------


def _writer(calls: list[Path], delay: float = 0.0):
    def build(out: Path) -> None:
        calls.append(out)
        time.sleep(delay)
        (out / "weights").write_text(str(len(calls)))

    return build


def test_ensure_cached_dir_builds_once_and_rebuilds_on_a_new_key(tmp_path):
    dest, calls = tmp_path / "models" / "m", []
    assert ensure_cached_dir(dest, {"sha256": "a"}, _writer(calls)) == dest
    assert ensure_cached_dir(dest, {"sha256": "a"}, _writer(calls)) == dest
    assert len(calls) == 1
    assert json.loads((dest / MARKER_FILE).read_text()) == {"sha256": "a"}
    ensure_cached_dir(dest, {"sha256": "b"}, _writer(calls))
    assert len(calls) == 2 and (dest / "weights").read_text() == "2"
    assert sorted(p.name for p in dest.parent.iterdir()) == [".m.lock", "m"]  # no temp left


def test_ensure_cached_dir_failed_build_leaves_nothing(tmp_path):
    dest = tmp_path / "m"

    def broken(out: Path) -> None:
        (out / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ensure_cached_dir(dest, {"k": 1}, broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock"]


def test_ensure_cached_dir_concurrent_callers_build_once(tmp_path):
    # flock locks conflict between separate open() calls even within one process, so threads
    # exercise the same path as two processes.
    dest, calls, results = tmp_path / "m", [], []
    build = _writer(calls, delay=0.3)
    threads = [
        threading.Thread(target=lambda: results.append(ensure_cached_dir(dest, {"k": 1}, build)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [dest] * 3 and len(calls) == 1


def test_ensure_cached_dir_clears_leftovers_of_a_killed_build(tmp_path):
    (tmp_path / ".m.tmp-dead").mkdir()
    ensure_cached_dir(tmp_path / "m", {"k": 1}, _writer([]))
    assert not (tmp_path / ".m.tmp-dead").exists()


# -- the real SmolLM2 folder and the tiny Llama --------------------------------------------------


@pytest.mark.slow
def test_prepare_smollm2_gives_a_loadable_chat_model(capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = shared_cache_dir()
    assert models.main(["prepare-smollm2", "--cache-dir", str(cache)]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == cache / "models" / "smollm2-135m-instruct"
    assert json.loads((folder / MARKER_FILE).read_text())["source"] == models.SMOLLM2_GGUF_FILE
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert any(folder.glob("*.safetensors"))

    built = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert resolve_student("smollm2-135m", cache, hf_cache_dir=cache / "no-hub") == folder
    # cached: nothing is converted again (only the GGUF hash is recomputed)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == built

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    assert 130e6 < model.num_parameters() < 140e6
    assert tokenizer.eos_token == "<|im_end|>"  # what ends a chat turn
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    assert "<|im_start|>assistant" in tokenizer.decode(prompt["input_ids"][0])
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_tiny_llama_builds_and_runs_forward(tiny_llama_dir):  # noqa: F811 - the fixture
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert resolve_student(tiny_llama_dir, tiny_llama_dir / "unused") == tiny_llama_dir.resolve()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, local_files_only=True)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert tokenizer.chat_template
    batch = tokenizer(["hello world", "a longer second prompt"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


def test_tiny_llama_is_deterministic_per_seed(tmp_path, tiny_llama_dir):  # noqa: F811
    from safetensors.torch import load_file

    def up_proj(name: str, seed: int):
        folder = make_tiny_llama(tmp_path / name, seed, tokenizer_dir=tiny_llama_dir)
        return load_file(folder / "model.safetensors")["model.layers.0.mlp.up_proj.weight"]

    a, b, c = up_proj("a", 0), up_proj("b", 0), up_proj("c", 1)
    assert (a == b).all() and not (a == c).all()
