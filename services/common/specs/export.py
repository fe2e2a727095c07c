"""An Export request (or a DistillSpec's `export`) checked, with its defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from distill.v1 import common_pb2, exporter_pb2
from services.common.errors import InvalidArgument
from services.common.specs import names
from services.common.specs.fields import int_field, join

QUANT_NAMES = {
    common_pb2.QUANTIZATION_TYPE_F16: "f16",
    common_pb2.QUANTIZATION_TYPE_Q8_0: "q8_0",
    common_pb2.QUANTIZATION_TYPE_Q6_K: "q6_k",
    common_pb2.QUANTIZATION_TYPE_Q5_K_M: "q5_k_m",
    common_pb2.QUANTIZATION_TYPE_Q4_K_M: "q4_k_m",
    common_pb2.QUANTIZATION_TYPE_Q4_0: "q4_0",
}
QUANT_ENUMS = {name: value for value, name in QUANT_NAMES.items()}
# GGUF types made besides f16 (always made: it is the quantizer's input); the first is the one
# a job evaluates and serves.
DEFAULT_QUANTIZATIONS = ("q4_k_m", "q8_0")
DEFAULT_SMOKE_MAX_TOKENS = 64
MAX_SMOKE_TOKENS = 4096
DEFAULT_SMOKE_MESSAGES = ({"role": "user", "content": "Hello! In one sentence, what can you do?"},)
_ROLE_NAMES = {common_pb2.ROLE_SYSTEM: "system", common_pb2.ROLE_USER: "user",
               common_pb2.ROLE_ASSISTANT: "assistant"}


@dataclass(frozen=True, kw_only=True)
class ExportSettings:
    quantizations: tuple[str, ...] = DEFAULT_QUANTIZATIONS
    merged_model: bool = True
    lora_gguf: bool = False
    ollama_modelfile: bool = True
    smoke_max_tokens: int = DEFAULT_SMOKE_MAX_TOKENS


@dataclass(frozen=True, kw_only=True)
class ExportJob(ExportSettings):
    """One Export request: the settings, and which job's adapter on which base model."""

    job_id: str
    adapter_uri: str
    base_model: str
    adapter_sha256: str = ""
    # The untrained base at the first quantization, for the evaluation's before/after.
    include_base: bool = False
    smoke_messages: tuple[dict[str, str], ...] = DEFAULT_SMOKE_MESSAGES


def export_settings(settings: common_pb2.ExportSettings, field: str = "settings"
                    ) -> ExportSettings:
    quants: list[str] = []
    for value in settings.quantizations:
        if value not in QUANT_NAMES:
            allowed = ", ".join(common_pb2.QuantizationType.Name(v) for v in QUANT_NAMES)
            raise InvalidArgument(
                f"{join(field, 'quantizations')}: {value} is not a quantization; allowed: "
                f"{allowed}")
        if QUANT_NAMES[value] not in quants:
            quants.append(QUANT_NAMES[value])
    return ExportSettings(
        quantizations=tuple(quants) or DEFAULT_QUANTIZATIONS,
        merged_model=settings.merged_model if settings.HasField("merged_model") else True,
        lora_gguf=settings.lora_gguf,
        ollama_modelfile=(settings.ollama_modelfile if settings.HasField("ollama_modelfile")
                          else True),
        smoke_max_tokens=int_field(settings, "smoke_max_tokens",
                                   join(field, "smoke_max_tokens"), DEFAULT_SMOKE_MAX_TOKENS,
                                   low=1, high=MAX_SMOKE_TOKENS),
    )


def export_job(request: exporter_pb2.ExportRequest) -> ExportJob:
    """Checks an Export request and fills defaults (InvalidArgument names the field)."""
    job_id = names.job_id(request.job_id)
    if not request.adapter.uri:
        raise InvalidArgument("adapter.uri: required (the PEFT adapter folder in the store)")
    if not request.base_model.strip():
        raise InvalidArgument("base_model: required (the student the adapter was trained on)")
    settings = export_settings(request.settings)
    return ExportJob(
        job_id=job_id,
        adapter_uri=request.adapter.uri,
        adapter_sha256=request.adapter.sha256,
        base_model=request.base_model.strip(),
        include_base=request.include_base,
        smoke_messages=smoke_messages(request.smoke_prompts),
        **{f.name: getattr(settings, f.name) for f in fields(settings)},
    )


def smoke_messages(prompts: Sequence[common_pb2.Prompt], field: str = "smoke_prompts"
                   ) -> tuple[dict[str, str], ...]:
    """The first prompt with a user turn, without its reference answer; else a greeting."""
    for i, prompt in enumerate(prompts):
        messages = []
        for j, m in enumerate(prompt.messages):
            if m.role not in _ROLE_NAMES:
                raise InvalidArgument(f"{field}[{i}].messages[{j}].role: unspecified")
            messages.append({"role": _ROLE_NAMES[m.role], "content": m.content})
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()  # the reference answer: the model is to write it
        if any(m["role"] == "user" for m in messages):
            return tuple(messages)
    return DEFAULT_SMOKE_MESSAGES
