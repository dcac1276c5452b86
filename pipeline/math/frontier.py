"""The reward-vs-KL frontier as pure functions on arrays: which runs no other run beats
on both axes, the area under the step frontier up to a KL budget, and the best reward
within a budget. Higher reward and lower KL are better. ``pipeline.report.digest`` renders
them as Markdown; the figures draw the frontier."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_pairs(kl: Sequence[float], reward: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    kl_arr = np.asarray(kl, dtype=float)
    reward_arr = np.asarray(reward, dtype=float)
    if kl_arr.ndim != 1 or kl_arr.shape != reward_arr.shape:
        raise ValueError(
            f"kl and reward must be 1-D of the same length, got {kl_arr.shape} and "
            f"{reward_arr.shape}"
        )
    return kl_arr, reward_arr


def pareto_frontier(kl: Sequence[float], reward: Sequence[float]) -> np.ndarray:
    """Indices of the non-dominated runs, ordered by increasing KL.

    Run j dominates run i when kl[j] <= kl[i] and reward[j] >= reward[i] with at least one of
    the two strict. The frontier is every run that no other run dominates. Of a group of exact
    duplicates (equal KL and reward) only the one with the smallest index is kept, so along the
    returned indices KL and reward both increase strictly. Runs with a non-finite KL or reward
    take no part.
    """
    kl_arr, reward_arr = _as_pairs(kl, reward)
    finite = np.flatnonzero(np.isfinite(kl_arr) & np.isfinite(reward_arr))
    # KL ascending, then reward descending, then index ascending: every run that could
    # dominate run i (or duplicates it with a smaller index) comes before it.
    order = finite[np.lexsort((finite, -reward_arr[finite], kl_arr[finite]))]
    sorted_reward = reward_arr[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(sorted_reward)[:-1]])
    return order[sorted_reward > best_before].astype(np.int64)


def frontier_area(
    kl: Sequence[float], reward: Sequence[float], budget: float, floor: float
) -> float:
    """Area under the reward-vs-KL step frontier from KL 0 to ``budget``.

    Area = ∫_0^budget R(x) dx with R(x) = max(floor, max{reward_i : kl_i <= x}), the best
    reward reachable without spending more than x of KL; ``floor`` is what KL 0 gives (the SFT
    reward), so R(x) = floor where no run has kl_i <= x. R is a right-continuous step function
    that only rises at the frontier's KL values. A negative KL estimate counts as 0. Runs with
    a non-finite KL or reward take no part. With no runs the area is floor * budget.
    """
    if not (np.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a finite number > 0, got {budget}")
    if not np.isfinite(floor):
        raise ValueError(f"floor must be finite, got {floor}")
    kl_arr, reward_arr = _as_pairs(kl, reward)
    idx = pareto_frontier(kl_arr, reward_arr)
    steps_at = np.clip(kl_arr[idx], 0.0, None)
    inside = steps_at < budget  # a step at or past the budget adds no width
    edges = np.concatenate([[0.0], steps_at[inside], [budget]])
    levels = np.maximum.accumulate(np.concatenate([[floor], reward_arr[idx][inside]]))
    return float(np.sum(levels * np.diff(edges)))


def best_within(kl: Sequence[float], reward: Sequence[float], budget: float) -> float:
    """max{reward_i : kl_i <= budget} over runs with a finite KL and reward; NaN if none."""
    kl_arr, reward_arr = _as_pairs(kl, reward)
    inside = np.isfinite(kl_arr) & np.isfinite(reward_arr) & (kl_arr <= budget)
    return float(reward_arr[inside].max()) if inside.any() else float("nan")


# --- pure functions on run tables ---------------------------------------------------------
