"""ODPO offset scaling functions: Delta_r = alpha * f(score_chosen, score_rejected).

Each f is a pure function in the OFFSETS registry; adding one is a function here
and a YAML file in conf/offset/. Pairs always have score_chosen > score_rejected
strictly; functions refuse inputs where they are undefined rather than return NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def log_diff(score_chosen: torch.Tensor, score_rejected: torch.Tensor) -> torch.Tensor:
    """log(r_w - r_l): the paper's default. Undefined at a tie."""
    diff = score_chosen - score_rejected
    _require(
        diff > 0,
        "log_diff",
        "needs score_chosen > score_rejected (no ties)",
        score_chosen,
        score_rejected,
    )
    return torch.log(diff)


def log_ratio(score_chosen: torch.Tensor, score_rejected: torch.Tensor) -> torch.Tensor:
    """log r_w - log r_l. Needs strictly positive scores."""
    _require(
        (score_chosen > 0) & (score_rejected > 0),
        "log_ratio",
        "needs strictly positive scores",
        score_chosen,
        score_rejected,
    )
    return torch.log(score_chosen) - torch.log(score_rejected)


def diff(score_chosen: torch.Tensor, score_rejected: torch.Tensor) -> torch.Tensor:
    """r_w - r_l."""
    return score_chosen - score_rejected


OFFSETS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "log_diff": log_diff,
    "log_ratio": log_ratio,
    "diff": diff,
}


def compute_offset(
    score_chosen: torch.Tensor | list[float],
    score_rejected: torch.Tensor | list[float],
    name: str,
    alpha: float,
) -> torch.Tensor:
    """Per-pair offset alpha * f(score_chosen, score_rejected), shape (n_pairs,).

    Computed in float64 and returned in the scores' floating dtype (torch's
    default dtype for lists and integer inputs)."""
    if name not in OFFSETS:
        raise ValueError(f"unknown offset '{name}'; choose one of {sorted(OFFSETS)}")
    if alpha < 0:
        raise ValueError(f"offset alpha must be >= 0, got {alpha}")
    chosen, rejected = torch.as_tensor(score_chosen), torch.as_tensor(score_rejected)
    dtype = chosen.dtype if chosen.is_floating_point() else torch.get_default_dtype()
    offset = alpha * OFFSETS[name](chosen.double(), rejected.double())
    return offset.to(dtype)


def _require(
    ok: torch.Tensor, name: str, why: str, score_chosen: torch.Tensor, score_rejected: torch.Tensor
) -> None:
    ok = ok.reshape(-1)
    if not bool(ok.all()):
        bad = int((~ok).nonzero()[0, 0])
        raise ValueError(
            f"offset '{name}' {why}: pair {bad} has score_chosen={float(score_chosen.flatten()[bad]):.6g}, "
            f"score_rejected={float(score_rejected.flatten()[bad]):.6g}"
        )
