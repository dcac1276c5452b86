"""Preference losses as pure functions of per-sequence log-probabilities.

This is where beta enters: the implicit reward of a response is
    r_hat(x, y) = beta * (log pi_theta(y|x) - log pi_ref(y|x))
and the ODPO loss per pair is
    -log sigmoid(r_hat(x, y_w) - r_hat(x, y_l) - offset).
With offset None or 0 it is exactly the DPO loss. The offset is treated as a
constant (detached): no gradient flows into it.

IPO (Azar et al. 2023) regresses the log-ratio margin onto a target instead; see
:func:`ipo_terms` for the convention (as in TRL, beta plays the role of IPO's tau).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PreferenceOutput:
    """Per-pair tensors, shape (batch,)."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor  # beta * (policy - reference) log-ratio of y_w, detached
    rejected_rewards: torch.Tensor  # same for y_l, detached


def implicit_rewards(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    """r_hat = beta * (log pi_theta(y|x) - log pi_ref(y|x)), per sequence."""
    return beta * (policy_logps - reference_logps)


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    offset: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Per-pair DPO/ODPO loss, shape (batch,). ``offset`` None or 0 gives DPO."""
    return preference_terms(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        offset,
    ).loss


def preference_terms(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    offset: torch.Tensor | float | None = None,
) -> PreferenceOutput:
    """The loss together with the implicit rewards that training logs."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen = implicit_rewards(policy_chosen_logps, reference_chosen_logps, beta)
    rejected = implicit_rewards(policy_rejected_logps, reference_rejected_logps, beta)
    margin = chosen - rejected
    if offset is not None:
        offset = torch.as_tensor(offset, dtype=margin.dtype, device=margin.device).detach()
        margin = margin - offset
    # -log sigmoid(m) computed stably as softplus(-m).
    loss = -F.logsigmoid(margin)
    return PreferenceOutput(
        loss=loss, chosen_rewards=chosen.detach(), rejected_rewards=rejected.detach()
    )


@dataclass(frozen=True)
class Loss:
    """A registered preference loss: the function and whether it takes an offset.

    ``fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=, offset=)`` returns
    a :class:`PreferenceOutput`; ``uses_offset`` says whether ``alpha`` and the scaling
    function (``conf/offset``) apply to it. This is the one place that says so: the run
    name, the validation, the training and every report read it from here."""

    name: str
    fn: Callable[..., PreferenceOutput]
    uses_offset: bool

    def __call__(self, *logps: torch.Tensor, beta: float, offset=None) -> PreferenceOutput:
        return self.fn(*logps, beta=beta, offset=offset)


# name -> Loss. A new loss is one function decorated with ``@register`` and one
# ``conf/loss/<name>.yaml``; nothing else names it.
LOSSES: dict[str, Loss] = {}


def register(name: str, *, uses_offset: bool) -> Callable:
    def add(fn: Callable[..., PreferenceOutput]) -> Callable[..., PreferenceOutput]:
        LOSSES[name] = Loss(name, fn, uses_offset)
        return fn

    return add


def uses_offset(name: str) -> bool:
    """Whether the loss ``name`` takes an offset (alpha and a scaling function); False for
    a name nothing registered (the config validation refuses those by name)."""
    loss = LOSSES.get(name)
    return bool(loss is not None and loss.uses_offset)


def ipo_terms(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    offset: torch.Tensor | float | None = None,
) -> PreferenceOutput:
    """IPO's squared loss per pair, with an optional offset.

    Convention (as in TRL): our ``beta`` plays the role of IPO's tau. With
        h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))
    the unscaled log-ratio margin, the loss is (h - 1/(2 beta))^2: h is regressed onto
    1/(2 tau) with tau = beta. An offset Delta is in reward units, as for ODPO (the reward
    being r_hat = beta * log-ratio): the loss is (h - (1/2 + Delta)/beta)^2, i.e. the reward
    margin r_hat_w - r_hat_l is pulled to 1/2 + Delta. ``offset`` None is Delta = 0; the
    offset is detached. The rewards returned are beta * log-ratio, detached, as for DPO."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_ratio = policy_chosen_logps - reference_chosen_logps
    rejected_ratio = policy_rejected_logps - reference_rejected_logps
    h = chosen_ratio - rejected_ratio
    target = 0.5 / beta  # 1 / (2 tau)
    if offset is not None:
        offset = torch.as_tensor(offset, dtype=h.dtype, device=h.device).detach()
        target = target + offset / beta  # (1/2 + Delta) / beta; Delta = 0 adds exactly 0
    loss = (h - target) ** 2
    return PreferenceOutput(
        loss=loss,
        chosen_rewards=(beta * chosen_ratio).detach(),
        rejected_rewards=(beta * rejected_ratio).detach(),
    )


def register_pair(terms: Callable[..., PreferenceOutput], plain: str, shifted: str) -> None:
    """Register one loss's two faces: ``plain`` ignores an offset even if given (DPO, IPO)
    and ``shifted`` asks each pair for it (ODPO, IPO with an offset)."""

    def without_offset(*logps: torch.Tensor, beta: float, offset=None) -> PreferenceOutput:
        return terms(*logps, beta=beta, offset=None)

    def with_offset(*logps: torch.Tensor, beta: float, offset=None) -> PreferenceOutput:
        return terms(*logps, beta=beta, offset=offset)

    register(plain, uses_offset=False)(without_offset)
    register(shifted, uses_offset=True)(with_offset)


# DPO and ODPO: -log sigmoid(margin - offset); the pair must be separated by at least
# ``offset`` in implicit reward. IPO: (h - 1/(2 beta))^2, and with an offset the reward
# margin is pulled to 1/2 + ``offset``.
register_pair(preference_terms, "dpo", "odpo")
register_pair(ipo_terms, "ipo", "ipo_offset")
