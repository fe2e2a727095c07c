"""The BOND loss (DESIGN.md "The BOND loss") as a pure tensor function.

    L      = (1 - beta) * L_sft + beta * L_pref + gamma * L_kl
    L_sft  = token-mean NLL of the chosen responses under the policy
    L_pref = -log sigmoid(tau * [(log pi(y+) - log ref(y+)) - (log pi(y-) - log ref(y-))]),
             mean over the (chosen, rejected) pairs; sequence log-probs summed over response tokens
    L_kl   = token-mean KL(pi || ref) over the response positions of the chosen, full vocabulary

The batch is a padded block of sequences (chosen and rejected responses of several prompts);
`labels` is -100 everywhere but on response tokens, as for a Hugging Face causal LM, and logits at
position t predict the token at t + 1. A term whose weight is 0 is left out of the sum (not
multiplied by 0), so beta = gamma = 0 is exactly the SFT loss and needs no reference logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

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
    a response token, `targets` [M] those tokens, `rows` [M] the sequence of each. The training
    step computes the LM head at these positions only (prompt positions never need logits)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if gamma < 0 or tau <= 0:
        raise ValueError(f"gamma must be >= 0 and tau > 0, got gamma={gamma}, tau={tau}")
    n_pairs = int(pairs.shape[0])
    if ref_logits is None and needs_reference(beta, gamma, n_pairs):
        raise ValueError("ref_logits are required when gamma > 0 or beta > 0 with pairs")

    device = policy_logits.device
    n_rows = int(chosen.shape[0])
    zero = torch.zeros((), device=device)
    policy_logps = nnf.log_softmax(policy_logits.float(), dim=-1)
    token_logps = policy_logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    on_chosen = chosen.to(device)[rows]

    chosen_token_logps = token_logps[on_chosen]
    sft = -chosen_token_logps.mean() if chosen_token_logps.numel() else zero

    preference, kl, margin = zero, zero, torch.full((), math.nan, device=device)
    if ref_logits is not None:
        with torch.no_grad():
            ref_logps = nnf.log_softmax(ref_logits.float(), dim=-1)
        if n_pairs:
            ref_token_logps = ref_logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            log_ratio = torch.zeros(n_rows, device=device).index_add(
                0, rows, token_logps - ref_token_logps
            )
            margins = log_ratio[pairs[:, 0]] - log_ratio[pairs[:, 1]]
            preference = -nnf.logsigmoid(tau * margins).mean()
            margin = margins.detach().mean()
        if chosen_token_logps.numel():
            p_logps = policy_logps[on_chosen]
            kl = (p_logps.exp() * (p_logps - ref_logps[on_chosen])).sum(-1).mean()

    if beta == 0:
        loss = sft
    elif beta == 1:
        loss = preference
    else:
        loss = (1 - beta) * sft + beta * preference
    if gamma:
        loss = loss + gamma * kl
    return BondLoss(loss=loss, sft=sft, preference=preference, kl=kl, margin=margin)
