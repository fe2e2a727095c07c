"""The training loop every backend shares: BOND step, AdamW, linear warm-up/decay, checkpoints,
resumable to the step (optimizer, scheduler, RNG and data position restored), cancellable
between steps.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.errors import Cancelled
from services.common.specs.layout import TRAINING_LOG
from services.common.specs.train import BondConfig, TrainConfig
from services.common.storage import StoredObject
from services.trainer import checkpoints
from services.trainer.bond_loss import (
    BondLoss,
    bond_loss_at,
    bond_loss_chunked,
    needs_reference,
    response_positions,
)
from services.trainer.data import Batch, Example, batch_indices, collate

MAX_GRAD_NORM = 1.0


# --- events (the servicer maps them onto TrainResponse) ---------------------------------------

@dataclass(frozen=True)
class Started:
    backend: str
    device: str
    total_parameters: int
    trainable_parameters: int
    total_steps: int
    resumed_from_step: int


@dataclass(frozen=True)
class Step:
    step: int
    total_steps: int
    loss: float
    sft_loss: float
    preference_loss: float
    kl_loss: float
    learning_rate: float
    tokens_per_second: float
    eta_seconds: float
    epoch: float


@dataclass(frozen=True)
class Checkpoint:
    step: int
    ref: StoredObject


@dataclass(frozen=True)
class Finished:
    adapter: StoredObject
    steps: int
    final_loss: float
    train_seconds: float
    tokens: int


Event = Started | Step | Checkpoint | Finished
Emit = Callable[[Event], None]


# --- one step ----------------------------------------------------------------------------------

def _plain_head(model: Any) -> tuple[Any, Any] | None:
    """(backbone, LM head) when the logits are exactly a frozen linear projection of the
    backbone's last hidden state; None for heads that do more (logit soft-capping or scaling, a
    LoRA adapter or gradients on the head), which take the logits path."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") \
        else base.config
    backbone = getattr(base, getattr(base, "base_model_prefix", ""), None)
    head = base.get_output_embeddings()
    plain = not any(getattr(config, name, None) for name in
                    ("final_logit_softcapping", "logit_scale", "logits_scaling",
                     "output_multiplier", "lm_head_multiplier"))
    if backbone is None or backbone is base or not plain or type(head) is not torch.nn.Linear \
            or any(p.requires_grad for p in head.parameters()):
        return None
    return backbone, head


def response_hidden(backbone: Any, batch: Batch, mask: Any) -> Any:
    """The backbone's last hidden states [M, H] at the positions in `mask` ([N, T-1]) only."""
    hidden = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      use_cache=False).last_hidden_state
    return hidden[:, :-1][mask]


def response_logits(model: Any, batch: Batch, mask: Any) -> Any:
    """Logits [M, V] at the positions in `mask` ([N, T-1]): the full forward, for heads that are
    not a plain projection."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return logits[:, :-1][mask]


def bond_step(model: Any, batch: Batch, bond: BondConfig) -> BondLoss:
    """Forward passes and the BOND loss of one batch. The reference is the same model with its
    adapter disabled, under no_grad: no second copy of the weights. With a plain LM head the loss
    runs the head itself, chunk by chunk, on the response positions only (no [M x V] logits)."""
    import torch

    mask, targets, rows = response_positions(batch.labels)
    with_reference = needs_reference(bond.beta, bond.gamma, int(batch.pairs.shape[0]))
    terms = {"beta": bond.beta, "gamma": bond.gamma, "tau": bond.tau}
    plain = _plain_head(model)
    if plain is None:
        ref_logits = None
        if with_reference:
            with torch.no_grad(), model.disable_adapter():
                ref_logits = response_logits(model, batch, mask)
        logits = response_logits(model, batch, mask)
        return bond_loss_at(logits, targets, rows, batch.chosen, batch.pairs, ref_logits,
                            **terms)
    backbone, head = plain
    ref_hidden = None
    if with_reference:
        with torch.no_grad(), model.disable_adapter():
            ref_hidden = response_hidden(backbone, batch, mask)
    hidden = response_hidden(backbone, batch, mask)
    return bond_loss_chunked(hidden, head.weight, targets, rows, batch.chosen, batch.pairs,
                             ref_hidden, head_bias=head.bias, **terms)


def make_optimizer(model: Any, config: TrainConfig, total_steps: int) -> tuple[Any, Any]:
    import torch
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for all the adapter's tensors (the default for-loop launches several ops
    # per tensor, a visible share of a CPU step); what Hugging Face's Trainer uses by default.
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0, fused=True)
    warmup = math.ceil(config.warmup_ratio * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    return optimizer, scheduler


def count_parameters(model: Any) -> tuple[int, int]:
    total = trainable = 0
    for p in model.parameters():
        n = p.numel()
        # bitsandbytes 4-bit weights store two values per byte
        if p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        trainable += n if p.requires_grad else 0
    return total, trainable


# --- the loop ----------------------------------------------------------------------------------

class TrainingLoop:
    """Runs `config.total_steps` optimiser steps over `examples` on a LoRA-wrapped model.

    `save_checkpoint(step, folder)` uploads a checkpoint folder and returns its ref; `resume_dir`
    is a downloaded checkpoint folder to continue from (None for a fresh run). The caller seeds
    the global RNG before building the model; the loop owns it from then on.
    """

    def __init__(
        self,
        model: Any,
        examples: Sequence[Example],
        config: TrainConfig,
        *,
        device: Any,
        pad_id: int,
        emit: Emit,
        cancel: threading.Event,
        save_checkpoint: Callable[[int, Path], StoredObject],
        work_dir: Path,
    ) -> None:
        self.model = model
        self.examples = list(examples)
        self.config = config
        self.device = device
        self.pad_id = pad_id
        self.emit = emit
        self.cancel = cancel
        self.save_checkpoint = save_checkpoint
        self.work_dir = work_dir
        self.total_steps = config.total_steps(len(self.examples))
        self.batches_per_epoch = math.ceil(len(self.examples) / config.batch_size)
        self.optimizer, self.scheduler = make_optimizer(model, config, self.total_steps)
        self.step = 0
        self.data_position = 0  # micro-batches consumed
        self.tokens = 0
        self.train_seconds = 0.0
        self.last_loss = math.nan
        # One row per step (the Step event's figures): the training log, kept across resumes.
        self.history: list[dict[str, Any]] = []

    # state that makes a resumed run identical to an uninterrupted one
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "data_position": self.data_position,
            "tokens": self.tokens,
            "train_seconds": self.train_seconds,
            "last_loss": self.last_loss,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": checkpoints.capture_rng(),
            "fingerprint": self.config.fingerprint(),
        }

    def load(self, folder: Path) -> None:
        """Restores adapter weights, optimizer, scheduler, counters and RNG from a checkpoint."""
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        from services.common.errors import FailedPrecondition

        state = torch.load(folder / checkpoints.STATE_FILE, map_location="cpu", weights_only=True)
        if state["fingerprint"] != self.config.fingerprint():
            raise FailedPrecondition(
                "resume: the newest checkpoint was made with a different student, dataset, LoRA "
                "settings, batch size, sequence length or seed; start without resume instead"
            )
        weights = load_file(folder / checkpoints.ADAPTER_DIR / "adapter_model.safetensors")
        set_peft_model_state_dict(self.model, weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.data_position = state["data_position"]
        self.tokens = state["tokens"]
        self.train_seconds = state["train_seconds"]
        self.last_loss = state["last_loss"]
        self.history = checkpoints.read_training_log(folder / TRAINING_LOG, self.step)
        checkpoints.restore_rng(state["rng"])

    def write_log(self, path: Path) -> None:
        """The training log so far (one JSON line per step) to `path`."""
        checkpoints.write_training_log(path, self.history)

    def _checkpoint(self) -> None:
        import torch

        folder = Path(tempfile.mkdtemp(prefix=f"step-{self.step}-", dir=self.work_dir))
        self.model.save_pretrained(folder / checkpoints.ADAPTER_DIR)
        torch.save(self.state_dict(), folder / checkpoints.STATE_FILE)
        self.write_log(folder / TRAINING_LOG)
        ref = self.save_checkpoint(self.step, folder)
        self.emit(Checkpoint(self.step, ref))

    def run(self) -> int:
        """Trains up to total_steps; returns the last step. Cancelled between steps if asked."""
        import torch

        config = self.config
        accum = config.gradient_accumulation_steps
        with_rejected = config.bond.beta > 0
        batches = batch_indices(len(self.examples), config.batch_size, config.seed,
                                start=self.data_position)
        self.model.train()
        run_started, run_steps = time.perf_counter(), 0
        while self.step < self.total_steps:
            if self.cancel.is_set():
                raise Cancelled(f"training cancelled before step {self.step + 1}")
            started = time.perf_counter()
            parts = torch.zeros(4)
            step_tokens = 0
            for _ in range(accum):
                indices = next(batches)
                self.data_position += 1
                batch = collate([self.examples[i] for i in indices], self.pad_id,
                                with_rejected=with_rejected).to(self.device)
                out = bond_step(self.model, batch, config.bond)
                if out.loss.requires_grad:
                    (out.loss / accum).backward()
                parts += torch.stack([out.loss.detach(), out.sft.detach(),
                                      out.preference.detach(), out.kl.detach()]).float().cpu()
                step_tokens += batch.tokens
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], MAX_GRAD_NORM
            )
            learning_rate = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            run_steps += 1
            seconds = time.perf_counter() - started
            self.train_seconds += seconds
            self.tokens += step_tokens
            loss, sft, pref, kl = (parts / accum).tolist()
            self.last_loss = loss
            per_step = (time.perf_counter() - run_started) / run_steps
            event = Step(
                step=self.step,
                total_steps=self.total_steps,
                loss=loss,
                sft_loss=sft,
                preference_loss=pref,
                kl_loss=kl,
                learning_rate=learning_rate,
                tokens_per_second=step_tokens / seconds if seconds > 0 else 0.0,
                eta_seconds=per_step * (self.total_steps - self.step),
                epoch=self.data_position / self.batches_per_epoch,
            )
            self.history.append({
                "step": event.step, "loss": loss, "sft_loss": sft, "preference_loss": pref,
                "kl_loss": kl, "learning_rate": learning_rate,
                "tokens_per_second": event.tokens_per_second, "epoch": event.epoch,
                "tokens": step_tokens, "seconds": seconds,
            })
            self.emit(event)
            if self.step % config.checkpoint_interval == 0 or self.step == self.total_steps:
                self._checkpoint()
        return self.step
