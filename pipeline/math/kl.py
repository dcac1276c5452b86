"""KL(pi_theta || pi_SFT) estimators on samples drawn from pi_theta.

Sums run over response tokens only. The authors' code also summed prompt tokens, which
is not just noise: with c = log pi_SFT(x) - log pi(x) over the prompt, the k3 expectation
gains E[exp(c) - 1 - c] >= 0, a bias upward whenever the policy moved on prompt tokens.
"""

from __future__ import annotations

import torch


def k3_kl(policy_logps: torch.Tensor, reference_logps: torch.Tensor) -> torch.Tensor:
    """Per-sample k3 estimate: with rho = log pi_ref(y|x) - log pi_theta(y|x),
    KL ~= exp(rho) - 1 - rho. Unbiased and always >= 0. Shape (n,)."""
    rho = reference_logps - policy_logps
    return torch.expm1(rho) - rho


def exact_token_kl(
    policy_token_logprobs: torch.Tensor, reference_token_logprobs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-sample sum over response positions of the exact KL between the two
    next-token distributions.

    policy_token_logprobs, reference_token_logprobs: (n, T, V) log-softmax outputs.
    mask: (n, T), 1 on response positions. Returns (n,).
    """
    per_position = (
        policy_token_logprobs.exp() * (policy_token_logprobs - reference_token_logprobs)
    ).sum(-1)
    return (per_position * mask).sum(-1)


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN for no values)."""
    values = values.double()
    n = values.numel()
    if n == 0:
        return float("nan"), float("nan")
    mean = float(values.mean())
    se = float(values.std(unbiased=True) / n**0.5) if n > 1 else 0.0
    return mean, se
