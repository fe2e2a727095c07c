"""Building inputs for exporter tests: PEFT adapters on a base folder, stores, settings."""

from __future__ import annotations

from pathlib import Path

from services.common.storage import LocalStore, StoredObject
from services.exporter.settings import ExporterSettings

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(base_dir: Path, dest: Path, *, seed: int = 0, r: int = 4,
                 targets: list[str] | None = None, scale: float = 1.0) -> Path:
    """A LoRA adapter on `base_dir` with random non-zero A and B, so merging changes the model.

    `scale` multiplies B; seeded, so the same arguments give the same adapter.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets or TARGETS,
                        lora_dropout=0.0, init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_peft_model(base, config)
    if scale != 1.0:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.mul_(scale)
    model.save_pretrained(dest)
    return dest


def upload_adapter(store: LocalStore, adapter_dir: Path, prefix: str = "inputs/adapter/"
                   ) -> StoredObject:
    return store.put_dir(prefix, adapter_dir)


def settings_for(tmp_path: Path, **overrides) -> ExporterSettings:
    store = tmp_path / "store"
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return ExporterSettings(store_url=f"file://{store}", work_dir=work, **overrides)
