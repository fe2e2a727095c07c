"""The "unsloth" backend: Unsloth's FastLanguageModel (CUDA only), with the same BOND loop.

Unsloth loads the student (4-bit by default) and adds LoRA through its own `get_peft_model`, which
returns a peft.PeftModel, so the reference pass is `disable_adapter()` as in the TRL backend. It can
only run on a CUDA node; on CPU hosts only the selection logic is tested
(benchmarks/gpu_check.sh runs it on a GPU).
"""

from __future__ import annotations

import os
from pathlib import Path

from services.common.specs.train import LoraConfig
from services.trainer.backends import DEFAULT_TARGET_MODULES, Backend, LoadedModel


class UnslothBackend(Backend):
    name = "unsloth"

    def __init__(self, load_in_4bit: bool = True) -> None:
        self.load_in_4bit = load_in_4bit

    def load(self, model_dir: Path, lora: LoraConfig, *, max_seq_length: int,
             seed: int) -> LoadedModel:
        # Unsloth's forward may skip materialising logits in training mode; the BOND loss needs
        # them (policy and reference). Read by Unsloth at call time; set before it is imported.
        os.environ.setdefault("UNSLOTH_RETURN_LOGITS", "1")
        import torch
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(model_dir),
            max_seq_length=max_seq_length,
            dtype=None,  # bf16 where supported
            load_in_4bit=self.load_in_4bit,
        )
        model = FastLanguageModel.get_peft_model(
            model,
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules or DEFAULT_TARGET_MODULES),
            bias="none",
            use_gradient_checkpointing="unsloth",
            random_state=seed,
            max_seq_length=max_seq_length,
        )
        FastLanguageModel.for_training(model)
        if getattr(tokenizer, "tokenizer", None) is not None:  # a processor wrapping it
            tokenizer = tokenizer.tokenizer
        return LoadedModel(model, tokenizer, torch.device("cuda:0"))
