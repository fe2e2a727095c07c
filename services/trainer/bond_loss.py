"""The BOND loss (docs/ARCHITECTURE.md "The BOND loss") as a pure tensor function.

    L      = (1 - beta) * L_sft + beta * L_pref + gamma * L_kl
    L_sft  = token-mean NLL of the chosen responses under the policy
    L_pref = -log sigmoid(tau * [(log pi(y+) - log ref(y+)) - (log pi(y-) - log ref(y-))]),
             mean over the (chosen, rejected) pairs; sequence log-probs summed over response tokens
    L_kl   = token-mean KL(pi || ref) over the response positions of the chosen, full vocabulary

The batch is a padded block of sequences (chosen and rejected responses of several prompts);
`labels` is -100 everywhere but on response tokens, as for a Hugging Face causal LM, and logits at
position t predict the token at t + 1. A term whose weight is 0 is left out of the sum (not
multiplied by 0), so beta = gamma = 0 is exactly the SFT loss and needs no reference logits.

Two ways in, one set of terms (`_terms`, from per-position figures only):
- `bond_loss` / `bond_loss_at` take logits: the reference, and the step's path for models whose
  LM head is more than a frozen linear projection.
- `bond_loss_chunked` takes the last hidden states [M, H] and the LM head's weight and never holds
  the [M x V] logits: it runs the head over chunks of positions (`CHUNK_ELEMENTS` logits at a
  time) and keeps, per position, the token's log-probability, the KL to the reference and their
  gradients with respect to the hidden state ([M, H] each, exact: each figure depends on its own
  position's hidden state only). Backward is then one multiply per position, with no second pass
  over the vocabulary. Same idea as the chunked/fused LM-head losses of Liger-Kernel, Cut
  Cross-Entropy and TRL, written for BOND's three terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

from services.common.training_memory import CHUNK_ELEMENTS  # the memory model counts its buffers

IGNORE_INDEX = -100


@dataclass(frozen=True)
class BondLoss:
    """The loss to back-propagate and its parts (parts not computed are 0)."""

    loss: torch.Tensor
    sft: torch.Tensor
    preference: torch.Tensor
    kl: torch.Tensor
    # Mean over pairs of the implicit reward margin (log-ratio of y+ minus log-ratio of y-),
    # detached; NaN when the batch has no pair or no reference logits were given.
    margin: torch.Tensor


def needs_reference(beta: float, gamma: float, n_pairs: int) -> bool:
    """Whether the step must run the reference (adapter disabled) forward pass at all."""
    return gamma > 0 or (beta > 0 and n_pairs > 0)


def response_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities of the response tokens and the row each belongs to.

    Returns `(token_logps [M], rows [M])` for the M positions whose next label is not ignored.
    """
    mask = labels[:, 1:] != IGNORE_INDEX
    rows = mask.nonzero(as_tuple=True)[0]
    logps = nnf.log_softmax(logits[:, :-1][mask].float(), dim=-1)
    targets = labels[:, 1:][mask]
    return logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1), rows


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the response tokens' log-probabilities, one per row ([N])."""
    token_logps, rows = response_logps(logits, labels)
    return torch.zeros(labels.shape[0], device=logits.device).index_add(0, rows, token_logps)


def bond_loss(
    policy_logits: torch.Tensor,
    labels: torch.Tensor,
    chosen: torch.Tensor,
    pairs: torch.Tensor,
    ref_logits: torch.Tensor | None = None,
    *,
    beta: float,
    gamma: float,
    tau: float,
) -> BondLoss:
    """The BOND loss of one batch.

    policy_logits: [N, T, V] logits of the student with its adapter (with grad).
    labels:        [N, T] token ids on response tokens, IGNORE_INDEX elsewhere.
    chosen:        [N] bool, True for rows holding a chosen response.
    pairs:         [P, 2] long, (chosen row, rejected row) for every pair C x R of each prompt.
    ref_logits:    [N, T, V] logits of the same model with the adapter disabled (no grad); needed
                   when `needs_reference(beta, gamma, P)`, optional otherwise (then the
                   preference and KL parts are computed for reporting only if it is given).
    """
    mask = labels[:, 1:] != IGNORE_INDEX
    return bond_loss_at(
        policy_logits[:, :-1][mask],
        labels[:, 1:][mask],
        mask.nonzero(as_tuple=True)[0],
        chosen,
        pairs,
        None if ref_logits is None else ref_logits[:, :-1][mask],
        beta=beta, gamma=gamma, tau=tau,
    )


def response_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mask [N, T-1] of positions whose next token is a response token, their targets [M], the
    row of each [M]): what `bond_loss_at` needs besides the logits at those positions."""
    mask = labels[:, 1:] != IGNORE_INDEX
    return mask, labels[:, 1:][mask], mask.nonzero(as_tuple=True)[0]




def bond_loss_at(
    policy_logits: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    chosen: torch.Tensor,
    pairs: torch.Tensor,
    ref_logits: torch.Tensor | None = None,
    *,
    beta: float,
    gamma: float,
    tau: float,
) -> BondLoss:
    """`bond_loss` on the response positions only: logits [M, V] at the M positions that predict
    a response token, `targets` [M] those tokens, `rows` [M] the sequence of each."""
    _check(beta, gamma, tau, int(pairs.shape[0]), ref_logits is not None)
    policy_logps = nnf.log_softmax(policy_logits.float(), dim=-1)
    token_logps = policy_logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    on_chosen = chosen.to(policy_logits.device)[rows]
    ref_token_logps = kl = None
    if ref_logits is not None:
        with torch.no_grad():
            ref_logps = nnf.log_softmax(ref_logits.float(), dim=-1)
        ref_token_logps = ref_logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        p_logps = policy_logps[on_chosen]
        kl = (p_logps.exp() * (p_logps - ref_logps[on_chosen])).sum(-1)
    return _terms(token_logps, ref_token_logps, kl, rows, chosen, pairs,
                  beta=beta, gamma=gamma, tau=tau)


def bond_loss_chunked(
    policy_hidden: torch.Tensor,
    head_weight: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    chosen: torch.Tensor,
    pairs: torch.Tensor,
    ref_hidden: torch.Tensor | None = None,
    *,
    beta: float,
    gamma: float,
    tau: float,
    head_bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> BondLoss:
    """`bond_loss_at` from the last hidden states instead of the logits, which are never held in
    full: logits = hidden @ head_weight.T (+ head_bias), computed `chunk_size` positions at a time
    (default: CHUNK_ELEMENTS / vocabulary). The head is frozen (no gradient reaches it)."""
    _check(beta, gamma, tau, int(pairs.shape[0]), ref_hidden is not None)
    if head_weight.requires_grad or (head_bias is not None and head_bias.requires_grad):
        raise ValueError("bond_loss_chunked needs a frozen LM head; use bond_loss_at")
    vocab = int(head_weight.shape[0])
    chunk = chunk_size or max(1, CHUNK_ELEMENTS // vocab)
    # Positions on chosen rows first (each group in its order), so the KL's positions are a
    # prefix of every chunk: slices, not copies, of the [chunk x vocabulary] buffers.
    on_chosen = chosen.to(policy_hidden.device)[rows]
    order = torch.argsort((~on_chosen).to(torch.int8), stable=True)
    token_logps, ref_token_logps, kl = _ChunkedHead.apply(
        policy_hidden[order], None if ref_hidden is None else ref_hidden[order], head_weight,
        head_bias, targets[order], int(on_chosen.sum()), chunk, gamma > 0)
    if ref_hidden is None:
        ref_token_logps = kl = None
    return _terms(token_logps, ref_token_logps, kl, rows[order], chosen, pairs,
                  beta=beta, gamma=gamma, tau=tau)


def _check(beta: float, gamma: float, tau: float, n_pairs: int, with_reference: bool) -> None:
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if gamma < 0 or tau <= 0:
        raise ValueError(f"gamma must be >= 0 and tau > 0, got gamma={gamma}, tau={tau}")
    if not with_reference and needs_reference(beta, gamma, n_pairs):
        raise ValueError("ref_logits are required when gamma > 0 or beta > 0 with pairs")


def _terms(
    token_logps: torch.Tensor,
    ref_token_logps: torch.Tensor | None,
    kl: torch.Tensor | None,
    rows: torch.Tensor,
    chosen: torch.Tensor,
    pairs: torch.Tensor,
    *,
    beta: float,
    gamma: float,
    tau: float,
) -> BondLoss:
    """The loss from per-position figures: `token_logps` [M] under the policy, `ref_token_logps`
    [M] under the reference and `kl` [K] at the K positions on chosen rows (None without a
    reference)."""
    device = token_logps.device
    n_rows, n_pairs = int(chosen.shape[0]), int(pairs.shape[0])
    zero = torch.zeros((), device=device)
    chosen_token_logps = token_logps[chosen.to(device)[rows]]
    sft = -chosen_token_logps.mean() if chosen_token_logps.numel() else zero

    preference, kl_mean, margin = zero, zero, torch.full((), math.nan, device=device)
    if ref_token_logps is not None:
        if n_pairs:
            log_ratio = torch.zeros(n_rows, device=device).index_add(
                0, rows, token_logps - ref_token_logps.detach()
            )
            margins = log_ratio[pairs[:, 0]] - log_ratio[pairs[:, 1]]
            preference = -nnf.logsigmoid(tau * margins).mean()
            margin = margins.detach().mean()
        if kl is not None and kl.numel():
            kl_mean = kl.mean()

    if beta == 0:
        loss = sft
    elif beta == 1:
        loss = preference
    else:
        loss = (1 - beta) * sft + beta * preference
    if gamma:
        loss = loss + gamma * kl_mean
    return BondLoss(loss=loss, sft=sft, preference=preference, kl=kl_mean, margin=margin)


def _head_logps(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                ) -> torch.Tensor:
    """float32 log-softmax of one chunk's logits, computed in the head's dtype as the model
    would."""
    return nnf.log_softmax(nnf.linear(hidden, weight, bias).float(), dim=-1)


class _ChunkedHead(torch.autograd.Function):
    """Per position: log pi(target), log ref(target) and, for the first `n_chosen` positions (those
    on chosen rows), KL(pi || ref), from the hidden states, chunk by chunk. Forward also keeps
    d(figure)/d(hidden) for the two figures with a gradient; backward scales them by the incoming
    gradients. Each [chunk x vocabulary] buffer is reused in place where the next one can be."""

    @staticmethod
    def forward(ctx, hidden, ref_hidden, weight, bias, targets, n_chosen, chunk, kl_grad):
        n, grad = hidden.shape[0], ctx.needs_input_grad[0]
        token_logps = hidden.new_empty(n, dtype=torch.float32)
        ref_token_logps = hidden.new_zeros(n, dtype=torch.float32)
        kl = hidden.new_zeros(n_chosen if ref_hidden is not None else 0, dtype=torch.float32)
        d_token = torch.empty_like(hidden) if grad else None
        d_kl = hidden.new_empty(kl.numel(), hidden.shape[1]) if grad and kl_grad else None
        for start in range(0, n, chunk):
            end = min(start + chunk, n)
            t = targets[start:end].unsqueeze(-1)
            logps = _head_logps(hidden[start:end].detach(), weight, bias)
            token_logps[start:end] = logps.gather(-1, t).squeeze(-1)
            k = max(0, min(end, kl.numel()) - start)  # this chunk's first k positions: KL's
            p = logps.exp() if grad or k else None
            if k:
                ref_logps = _head_logps(ref_hidden[start:end], weight, bias)
                ref_token_logps[start:end] = ref_logps.gather(-1, t).squeeze(-1)
                # p (log p - log ref), summed: the KL; d KL / d logits = p (log p - log ref - KL)
                weighted = logps[:k].sub_(ref_logps[:k]).mul_(p[:k])
                del ref_logps
                chunk_kl = weighted.sum(-1)
                kl[start:start + k] = chunk_kl
                if d_kl is not None:
                    weighted.addcmul_(p[:k], chunk_kl.unsqueeze(-1), value=-1)
                    d_kl[start:start + k] = weighted.to(weight.dtype) @ weight
            elif ref_hidden is not None:
                ref_token_logps[start:end] = _head_logps(ref_hidden[start:end], weight, bias) \
                    .gather(-1, t).squeeze(-1)
            del logps
            if grad:  # d log p(t) / d logits = onehot(t) - p: p, less 1 at t, and the sign after
                p.scatter_add_(-1, t, torch.full_like(t, -1, dtype=p.dtype))
                d_token[start:end] = (p.to(weight.dtype) @ weight).neg_()
        ctx.save_for_backward(d_token, d_kl)
        ctx.mark_non_differentiable(ref_token_logps)
        return token_logps, ref_token_logps, kl

    @staticmethod
    def backward(ctx, g_token, g_ref, g_kl):
        d_token, d_kl = ctx.saved_tensors
        if d_token is None:
            return (None,) * 8
        grad = g_token.unsqueeze(-1).to(d_token.dtype) * d_token
        if d_kl is not None and g_kl is not None:
            grad[:d_kl.shape[0]] += g_kl.unsqueeze(-1).to(d_kl.dtype) * d_kl
        return grad, None, None, None, None, None, None, None
