"""The "trl" backend: Hugging Face transformers + PEFT LoRA, on CPU or CUDA.

The name is the contract's (TRAINER_BACKEND_TRL): the model is loaded and wrapped exactly as TRL's
trainers do it (AutoModelForCausalLM + peft.get_peft_model), and the step is our own BOND step, so
the same loss runs in every backend, with gradient checkpointing on, as in TRL's trainers. TRL
itself is not imported at run time (it costs seconds and brings nothing the loop needs);
benchmarks/trainer_step.py times this backend against TRL's SFTTrainer and DPOTrainer.
"""

from __future__ import annotations

from pathlib import Path

from services.common.specs.train import LoraConfig
from services.trainer.backends import Backend, LoadedModel, cuda_available


class TrlBackend(Backend):
    name = "trl"

    def load(self, model_dir: Path, lora: LoraConfig, *, max_seq_length: int,
             seed: int) -> LoadedModel:
        import torch
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if cuda_available():
            device = torch.device("cuda:0")
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            device, dtype = torch.device("cpu"), torch.float32
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype,
                                                     local_files_only=True)
        model.config.use_cache = False
        # As TRL's trainers do by default: keep each block's input, recompute the rest in the
        # backward pass (about a third more compute for a fraction of the activations).
        # Non-reentrant, so the frozen embeddings need no requires_grad trick for LoRA.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.to(device)
        peft_config = PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules) or "all-linear",
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, peft_config)
        model.train()
        return LoadedModel(model, tokenizer, device)
