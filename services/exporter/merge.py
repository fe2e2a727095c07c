"""The adapter checked against its base model, then merged into a plain Hugging Face folder.

`validate_adapter` reads only metadata and the adapter's own (small) tensors: config, safetensors
header, tensor names and shapes against the base model built on the meta device (no weights
loaded), finite values. `merge_adapter` loads the base model from safetensors only, merges the
LoRA weights with PEFT's `merge_and_unload`, checks the merged logits against base + adapter,
and writes safetensors, the tokenizer (chat template included) and a generation config whose
EOS list holds the chat template's end-of-turn token.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import FailedPrecondition, InvalidArgument
from services.exporter import safety
from services.exporter.chat_format import ChatFormat, analyse_tokenizer

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Merged logits may differ from base + adapter by rounding only: the largest difference,
# relative to the largest logit, per weight dtype.
LOGITS_TOLERANCE = {"float32": 5e-4, "float16": 1e-2, "bfloat16": 5e-2}
_PROBE = "Distillation turns a large teacher into a small student. 12 + 30 = 42."


@dataclass(frozen=True)
class AdapterInfo:
    rank: int
    alpha: float
    target_modules: list[str]
    tensors: int
    parameters: int


def _adapter_config(adapter_dir: Path):
    from peft import LoraConfig, PeftConfig

    path = adapter_dir / ADAPTER_CONFIG
    if not path.is_file():
        raise InvalidArgument(f"adapter: {ADAPTER_CONFIG} is missing (a PEFT adapter folder "
                              f"holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"adapter: {ADAPTER_CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"adapter: {ADAPTER_CONFIG} is not a JSON object")
    if raw.get("peft_type") != "LORA":
        raise InvalidArgument(
            f"adapter: peft_type is {raw.get('peft_type')!r}; only LoRA adapters are exported"
        )
    try:
        config = PeftConfig.from_pretrained(str(adapter_dir))
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"adapter: {ADAPTER_CONFIG} is not a valid LoRA config: {exc}") \
            from None
    if not isinstance(config, LoraConfig):
        raise InvalidArgument(f"adapter: {ADAPTER_CONFIG} is not a LoRA config")
    config.inference_mode = True
    return config


def _meta_model(base_dir: Path):
    """The base architecture on the meta device: shapes without memory or weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_dir, local_files_only=True)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def validate_adapter(adapter_dir: Path, base_dir: Path) -> AdapterInfo:
    """InvalidArgument unless `adapter_dir` is a LoRA adapter that fits the base model."""
    import torch
    from peft import get_peft_model
    from peft.utils import get_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    safety.refuse_pickles(adapter_dir, "adapter")
    config = _adapter_config(adapter_dir)
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise InvalidArgument(f"adapter: {ADAPTER_WEIGHTS} is missing")
    header = safety.safetensors_header(weights, f"adapter file {ADAPTER_WEIGHTS}")
    try:
        expected_model = get_peft_model(_meta_model(base_dir), config)
    except ValueError as exc:  # e.g. target modules that the base model does not have
        raise InvalidArgument(f"adapter does not fit base model: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(expected_model).items()}
    got = {k: tuple(v["shape"]) for k, v in header.items()}
    missing = sorted(expected.keys() - got.keys())
    extra = sorted(got.keys() - expected.keys())
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} tensors the base model has no place for (e.g. {extra[0]})")
        raise InvalidArgument(f"adapter does not fit base model: {'; '.join(parts)}")
    for name in sorted(expected):
        if expected[name] != got[name]:
            raise InvalidArgument(
                f"adapter tensor {name} has shape {list(got[name])}, the base model needs "
                f"{list(expected[name])} (was it trained on another model?)"
            )
    try:
        tensors = load_file(weights)
    except SafetensorError as exc:
        raise InvalidArgument(f"adapter file {ADAPTER_WEIGHTS} is unreadable: {exc}") from None
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise InvalidArgument(f"adapter tensor {name} has dtype {tensor.dtype}, not float")
        if not bool(torch.isfinite(tensor).all()):
            raise InvalidArgument(f"adapter tensor {name} holds NaN or infinite values")
    return AdapterInfo(
        rank=int(config.r),
        alpha=float(config.lora_alpha),
        target_modules=sorted(config.target_modules or []),
        tensors=len(tensors),
        parameters=sum(t.numel() for t in tensors.values()),
    )


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


def repair_byte_level_bpe(tokenizer_json: Path) -> bool:
    """Make a byte-level BPE tokenizer.json look like one; True when it was changed.

    transformers' GGUF tokenizer import writes byte-level BPE vocabularies (GPT-2 style, "Ġ" for
    a space) with `byte_fallback: true` and a SentencePiece-style decoder. Tokenisation is the
    same, but llama.cpp's converter then takes the vocabulary for a SentencePiece one ("llama")
    and the GGUF tokenises text wrongly. The repair keeps it only if encode and decode are
    unchanged on probe texts.
    """
    from tokenizers import Tokenizer

    if not tokenizer_json.is_file():
        return False
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    model, decoder, pre = data.get("model") or {}, data.get("decoder") or {}, \
        data.get("pre_tokenizer") or {}

    def has_byte_level(node: dict) -> bool:
        return node.get("type") == "ByteLevel" or any(
            has_byte_level(d) for d in node.get("pretokenizers", node.get("decoders", []))
        )

    if not (model.get("type") == "BPE" and model.get("byte_fallback")
            and has_byte_level(pre) and decoder.get("type") == "Sequence"
            and has_byte_level(decoder)):
        return False
    repaired = json.loads(json.dumps(data))
    repaired["model"]["byte_fallback"] = False
    repaired["decoder"] = next(d for d in decoder["decoders"] if d.get("type") == "ByteLevel")
    before = Tokenizer.from_str(json.dumps(data))
    after = Tokenizer.from_str(json.dumps(repaired))
    probes = [_PROBE, " leading space\n\n\ttabs  and  doubles", "Ünïcödé ✓ 日本語 😀",
              "<|im_start|>user\nhi<|im_end|>\n", "x=1;y=[2,3]  # code"]
    for text in probes:
        ids = before.encode(text).ids
        if ids != after.encode(text).ids or before.decode(ids) != after.decode(ids):
            log.warning("tokenizer.json: byte-level repair would change tokenisation; kept as is")
            return False
    tokenizer_json.write_text(json.dumps(repaired, ensure_ascii=False, indent=2) + "\n",
                              encoding="utf-8")
    return True


@dataclass(frozen=True)
class ChatInfo:
    """How the model chats: its measured format, or why it could not be measured."""

    end_of_turn: str
    fmt: ChatFormat | None
    problem: str = ""


def chat_info(model_dir: Path, what: str = "the base model") -> ChatInfo:
    """FailedPrecondition without a chat template (prompts could not be formatted). A template
    that cannot be measured still exports; only the Ollama Modelfile is then impossible."""
    tokenizer = load_tokenizer(model_dir)
    if not getattr(tokenizer, "chat_template", None):
        raise FailedPrecondition(
            f"{what} has no chat template: the exporter needs one to format prompts, stop at "
            "end-of-turn and write the Ollama template"
        )
    try:
        fmt = analyse_tokenizer(tokenizer, what)
    except FailedPrecondition as exc:
        if not tokenizer.eos_token:
            raise
        return ChatInfo(tokenizer.eos_token, None, str(exc))
    return ChatInfo(fmt.end_of_turn, fmt)


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path,
                  end_of_turn: str | None = None) -> None:
    """Write base + adapter as one Hugging Face folder (safetensors).

    `end_of_turn` (default: measured from the chat template) joins the generation config's EOS
    list, so Hugging Face generation stops where llama.cpp's does.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = load_tokenizer(base_dir)
    if end_of_turn is None:
        end_of_turn = chat_info(base_dir).end_of_turn
    base = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype="auto", use_safetensors=True, local_files_only=True
    ).eval()
    model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=False).eval()
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    probe = tokenizer(_PROBE, return_tensors="pt")
    with torch.inference_mode():
        unmerged = model(**probe).logits.float()
        merged_model = model.merge_and_unload(safe_merge=True)
        merged = merged_model(**probe).logits.float()
    diff = float((merged - unmerged).abs().max() / unmerged.abs().max().clamp(min=1.0))
    tolerance = LOGITS_TOLERANCE.get(dtype, 5e-2)
    if not diff <= tolerance:  # also catches NaN
        raise FailedPrecondition(
            f"merged model's logits differ from base + adapter by {diff:.3g} of the largest "
            f"logit (tolerance {tolerance:g} for {dtype})"
        )
    log.info("merged adapter", extra={"relative_logit_diff": diff, "dtype": dtype})

    out_dir.mkdir(parents=True, exist_ok=True)
    merged_model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    repair_byte_level_bpe(out_dir / "tokenizer.json")

    try:
        generation = GenerationConfig.from_pretrained(base_dir, local_files_only=True)
    except OSError:
        generation = GenerationConfig.from_model_config(merged_model.config)
    eos = generation.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    end_of_turn_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    if end_of_turn_id not in eos_ids:
        eos_ids.append(end_of_turn_id)
    generation.eos_token_id = eos_ids[0] if len(eos_ids) == 1 else eos_ids
    if generation.pad_token_id is None and tokenizer.pad_token_id is not None:
        generation.pad_token_id = tokenizer.pad_token_id
    generation.save_pretrained(out_dir)
    safety.refuse_pickles(out_dir, "merged model")  # nothing pickled leaves this stage
