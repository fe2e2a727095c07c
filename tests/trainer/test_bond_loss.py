"""The BOND loss held to the identities docs/ARCHITECTURE.md names, on random tensors and on a
real model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnf

from services.common.specs.train import BondConfig, LoraConfig
from services.trainer.bond_loss import (
    IGNORE_INDEX,
    bond_loss,
    bond_loss_at,
    bond_loss_chunked,
    needs_reference,
    response_positions,
    sequence_logps,
)
from services.trainer.data import collate, read_curated, tokenize_rows
from services.trainer.loop import _plain_head, bond_step
from tests.trainer.helpers import curated_rows

V, T = 11, 7


def _batch(seed: int = 0):
    """4 rows: 2 chosen (rows 0, 1), 2 rejected (rows 2, 3); 2 prompts, pairs (0,2), (1,3)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, T, V, generator=g, requires_grad=True)
    labels = torch.randint(0, V, (4, T), generator=g)
    labels[:, :3] = IGNORE_INDEX  # the prompt
    labels[1, 6] = IGNORE_INDEX  # padding
    chosen = torch.tensor([True, True, False, False])
    pairs = torch.tensor([[0, 2], [1, 3]])
    return logits, labels, chosen, pairs


def test_beta_gamma_zero_is_token_mean_nll_of_chosen():
    logits, labels, chosen, pairs = _batch()
    out = bond_loss(logits, labels, chosen, pairs, beta=0.0, gamma=0.0, tau=0.1)
    expected = nnf.cross_entropy(logits[:2, :-1].reshape(-1, V), labels[:2, 1:].reshape(-1),
                                 ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.loss, expected)
    assert out.loss is out.sft  # exactly the SFT loss, not a weighted sum with zeros
    assert not needs_reference(0.0, 0.0, n_pairs=2)


def test_reference_equal_to_policy_gives_zero_kl_and_log2_preference():
    logits, labels, chosen, pairs = _batch()
    out = bond_loss(logits, labels, chosen, pairs, logits.detach().clone(), beta=0.5, gamma=0.1,
                    tau=0.1)
    assert out.kl.abs().item() < 1e-6
    assert out.preference.item() == pytest.approx(math.log(2), abs=1e-6)
    assert out.margin.item() == pytest.approx(0.0, abs=1e-6)
    expected = 0.5 * out.sft + 0.5 * math.log(2) + 0.1 * out.kl
    torch.testing.assert_close(out.loss, expected)


def test_preference_and_kl_match_a_direct_computation():
    logits, labels, chosen, pairs = _batch(1)
    ref = torch.randn(4, T, V, generator=torch.Generator().manual_seed(7))
    tau = 0.3
    out = bond_loss(logits, labels, chosen, pairs, ref, beta=0.25, gamma=2.0, tau=tau)

    ratio = sequence_logps(logits, labels) - sequence_logps(ref, labels)
    margins = ratio[pairs[:, 0]] - ratio[pairs[:, 1]]
    pref = -torch.log(torch.sigmoid(tau * margins)).mean()
    mask = labels[:2, 1:] != IGNORE_INDEX
    p = torch.log_softmax(logits[:2, :-1], -1)[mask]
    q = torch.log_softmax(ref[:2, :-1], -1)[mask]
    kl = (p.exp() * (p - q)).sum(-1).mean()
    sft = nnf.cross_entropy(logits[:2, :-1].reshape(-1, V), labels[:2, 1:].reshape(-1),
                            ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.preference, pref)
    torch.testing.assert_close(out.kl, kl)
    torch.testing.assert_close(out.loss, 0.75 * sft + 0.25 * pref + 2.0 * kl)
    out.loss.backward()  # differentiable end to end
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_prompts_without_rejected_give_sft_and_kl_only():
    logits, labels, chosen, _ = _batch()
    no_pairs = torch.zeros((0, 2), dtype=torch.long)
    ref = torch.randn(4, T, V)
    out = bond_loss(logits, labels, chosen, no_pairs, ref, beta=0.5, gamma=0.1, tau=0.1)
    assert out.preference.item() == 0.0 and math.isnan(out.margin.item())
    torch.testing.assert_close(out.loss, 0.5 * out.sft + 0.1 * out.kl)


def test_missing_reference_is_refused_when_needed():
    logits, labels, chosen, pairs = _batch()
    with pytest.raises(ValueError, match="ref_logits"):
        bond_loss(logits, labels, chosen, pairs, beta=0.5, gamma=0.0, tau=0.1)


# --- the chunked loss (hidden states and a frozen head; no [positions x vocabulary] logits) ---

H = 5


def _hidden_batch(seed: int = 0, vocab: int = V):
    """The rows of `_batch` as hidden states at the response positions and a random head."""
    _, labels, chosen, pairs = _batch(seed)
    g = torch.Generator().manual_seed(seed + 100)
    mask, targets, rows = response_positions(labels)
    hidden = torch.randn(int(mask.sum()), H, generator=g, requires_grad=True)
    ref_hidden = torch.randn(hidden.shape, generator=g)
    weight = torch.randn(vocab, H, generator=g)
    bias = torch.randn(vocab, generator=g)
    return hidden, ref_hidden, weight, bias, targets, rows, chosen, pairs


@pytest.mark.parametrize("beta,gamma", [(0.0, 0.0), (0.5, 0.1), (1.0, 0.0), (0.25, 2.0),
                                        (0.0, 1.0)])
@pytest.mark.parametrize("chunk_size", [1, 3, None])
def test_chunked_loss_and_gradient_equal_the_unchunked_reference(beta, gamma, chunk_size):
    hidden, ref_hidden, weight, bias, targets, rows, chosen, pairs = _hidden_batch(3, vocab=50)
    kw = {"beta": beta, "gamma": gamma, "tau": 0.3}
    ours = bond_loss_chunked(hidden, weight, targets, rows, chosen, pairs, ref_hidden,
                             head_bias=bias, chunk_size=chunk_size, **kw)
    (grad,) = torch.autograd.grad(ours.loss, hidden)

    ref_h = hidden.detach().clone().requires_grad_()
    logits = nnf.linear(ref_h, weight, bias)
    expected = bond_loss_at(logits, targets, rows, chosen, pairs,
                            nnf.linear(ref_hidden, weight, bias), **kw)
    (expected_grad,) = torch.autograd.grad(expected.loss, ref_h)
    for part in ("loss", "sft", "preference", "kl", "margin"):
        torch.testing.assert_close(getattr(ours, part), getattr(expected, part))
    torch.testing.assert_close(grad, expected_grad)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("chunk_size", [1, 2, 5, None])
def test_chunked_loss_with_chosen_and_rejected_rows_interleaved(chunk_size):
    """Rows as one prompt after another (chosen, rejected, chosen, rejected): the chunked head
    puts the chosen positions first internally; loss, parts and gradient must not change."""
    hidden, ref_hidden, weight, bias, targets, rows, _, _ = _hidden_batch(6, vocab=40)
    rows = torch.tensor([0, 2, 1, 3])[rows]  # row r is now row [0, 2, 1, 3][r]...
    order = torch.argsort(rows, stable=True)  # ...and the positions follow the rows
    hidden, ref_hidden = hidden.detach()[order].requires_grad_(), ref_hidden[order]
    targets, rows = targets[order], rows[order]
    chosen = torch.tensor([True, False, True, False])
    pairs = torch.tensor([[0, 1], [2, 3]])
    kw = {"beta": 0.5, "gamma": 0.7, "tau": 0.3}
    ours = bond_loss_chunked(hidden, weight, targets, rows, chosen, pairs, ref_hidden,
                             head_bias=bias, chunk_size=chunk_size, **kw)
    (grad,) = torch.autograd.grad(ours.loss, hidden)
    ref_h = hidden.detach().clone().requires_grad_()
    expected = bond_loss_at(nnf.linear(ref_h, weight, bias), targets, rows, chosen, pairs,
                            nnf.linear(ref_hidden, weight, bias), **kw)
    (expected_grad,) = torch.autograd.grad(expected.loss, ref_h)
    for part in ("loss", "sft", "preference", "kl", "margin"):
        torch.testing.assert_close(getattr(ours, part), getattr(expected, part))
    torch.testing.assert_close(grad, expected_grad)
    assert not torch.equal(chosen[rows], chosen[rows].sort(descending=True).values)


def test_chunked_beta_gamma_zero_is_exactly_the_sft_loss_without_a_reference():
    hidden, _, weight, _, targets, rows, chosen, pairs = _hidden_batch(4)
    out = bond_loss_chunked(hidden, weight, targets, rows, chosen, pairs, beta=0.0, gamma=0.0,
                            tau=0.1, chunk_size=2)
    on_chosen = chosen[rows]
    expected = nnf.cross_entropy(hidden[on_chosen] @ weight.T, targets[on_chosen])
    assert out.loss is out.sft
    torch.testing.assert_close(out.loss, expected)


def test_chunked_reference_equal_to_policy_gives_exactly_zero_kl_and_log2_preference():
    hidden, _, weight, bias, targets, rows, chosen, pairs = _hidden_batch(5)
    out = bond_loss_chunked(hidden, weight, targets, rows, chosen, pairs, hidden.detach().clone(),
                            beta=0.5, gamma=0.1, tau=0.1, head_bias=bias, chunk_size=2)
    assert out.kl.item() == 0.0
    assert out.margin.item() == 0.0
    assert out.preference.item() == pytest.approx(math.log(2), abs=1e-7)


def test_chunked_loss_refuses_a_trainable_head_and_a_missing_reference():
    hidden, _, weight, _, targets, rows, chosen, pairs = _hidden_batch()
    with pytest.raises(ValueError, match="frozen LM head"):
        bond_loss_chunked(hidden, weight.requires_grad_(), targets, rows, chosen, pairs,
                          hidden.detach(), beta=0.5, gamma=0.1, tau=0.1)
    with pytest.raises(ValueError, match="ref_logits"):
        bond_loss_chunked(hidden, weight.detach(), targets, rows, chosen, pairs, beta=0.5,
                          gamma=0.1, tau=0.1)


# --- on the tiny Llama with a LoRA adapter ----------------------------------------------------

@pytest.fixture(scope="module")
def peft_model(tiny_llama_dir):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    lora = LoraConfig()
    model = get_peft_model(model, PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha,
                                                 lora_dropout=0.0, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    return model, tokenizer


def _examples(tokenizer, n=4):
    import json

    rows = read_curated(json.dumps(r) for r in curated_rows(n))
    return tokenize_rows(rows, tokenizer, max_seq_length=48)


def test_sft_identity_against_the_models_own_loss(peft_model):
    model, tokenizer = peft_model
    batch = collate(_examples(tokenizer), tokenizer.pad_token_id, with_rejected=False)
    model.eval()
    with torch.no_grad():
        ours = bond_step(model, batch, BondConfig(beta=0.0, gamma=0.0, tau=0.1))
        hf = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   labels=batch.labels).loss
    torch.testing.assert_close(ours.loss, hf, rtol=1e-5, atol=1e-6)


def test_at_initialisation_kl_is_zero_and_preference_is_log2(peft_model):
    model, tokenizer = peft_model
    batch = collate(_examples(tokenizer), tokenizer.pad_token_id, with_rejected=True)
    assert batch.pairs.shape[0] > 0
    model.eval()
    with torch.no_grad():
        out = bond_step(model, batch, BondConfig(beta=0.5, gamma=0.1, tau=0.1))
    assert abs(out.kl.item()) < 1e-6
    assert out.preference.item() == pytest.approx(math.log(2), abs=1e-6)


def test_one_optimiser_step_raises_the_chosen_over_rejected_margin(tiny_llama_dir):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                           PeftLoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                          target_modules="all-linear", task_type="CAUSAL_LM"))
    model.eval()
    pair = [e for e in _examples(tokenizer) if e.rejected][:1]
    batch = collate(pair, tokenizer.pad_token_id, with_rejected=True)
    bond = BondConfig(beta=0.5, gamma=0.1, tau=0.1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    before = bond_step(model, batch, bond)
    before.loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = bond_step(model, batch, bond)
    assert before.margin.item() == pytest.approx(0.0, abs=1e-6)
    assert after.margin.item() > before.margin.item() + 1e-4
    assert after.preference.item() < math.log(2)


def test_lora_defaults_are_the_documented_ones():
    assert LoraConfig() == LoraConfig(r=16, alpha=32, dropout=0.05, target_modules=())


def test_step_through_the_chunked_head_has_the_gradient_of_the_full_logits(peft_model):
    """bond_step (hidden states, chunked head) against the model's own logits through
    bond_loss: same loss, same LoRA gradients."""
    model, tokenizer = peft_model
    batch = collate(_examples(tokenizer), tokenizer.pad_token_id, with_rejected=True)
    bond = BondConfig(beta=0.5, gamma=0.5, tau=0.5)
    assert _plain_head(model) is not None  # the step takes the chunked path
    with torch.no_grad():  # move the adapter off its zero start so the reference differs
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    try:
        model.eval()
        lora = [p for p in model.parameters() if p.requires_grad]
        ours = bond_step(model, batch, bond)
        ours_grads = torch.autograd.grad(ours.loss, lora)
        with torch.no_grad(), model.disable_adapter():
            ref = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        full = bond_loss(logits, batch.labels, batch.chosen, batch.pairs, ref, beta=bond.beta,
                         gamma=bond.gamma, tau=bond.tau)
        full_grads = torch.autograd.grad(full.loss, lora)
    finally:  # the module's model goes back to its zero-initialised adapter
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.zero_()
    assert ours.kl.item() > 0
    torch.testing.assert_close(ours.loss, full.loss)
    for a, b in zip(ours_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
