"""Statistics as pure functions: the interval of a binomial proportion (a judge's win rate)
and the bootstrap interval of a mean (the study's difference of areas over seeds)."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959964  # the standard normal quantile for a two-sided 95% interval


def wilson(wins: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion wins / n; (nan, nan) when n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n
    wins, which a judge's win rate near 0 or 1 on 100 prompts needs."""
    if n < 0 or not 0 <= wins <= n:
        raise ValueError(f"wilson needs 0 <= wins <= n, got wins={wins}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    p = wins / n
    z2 = z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamped: the interval always holds p (at 0 or n wins a bound is exactly 0 or 1), and
    # rounding could land a bound a hair past p or outside [0, 1] (4 of 4 gave 0.99999...).
    return (max(0.0, min(p, center - half)), min(1.0, max(p, center + half)))


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement).
    NaN for fewer than two values (a single seed has no spread to resample)."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:  # one seed: every resample is that seed, no interval at all
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
