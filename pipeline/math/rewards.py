"""Turning a scorer's probability into the probability of the good label and that into the
paper's training score."""

from __future__ import annotations

import numpy as np


def first_non_probability(p: np.ndarray) -> int | None:
    """Index (flattened) of the first value that is NaN, infinite or outside [0, 1]."""
    bad = np.flatnonzero(~np.isfinite(p) | (p < 0) | (p > 1))
    return int(bad[0]) if bad.size else None


def training_score(p_positive: np.ndarray) -> np.ndarray:
    """r = 1 + p(positive) if the classifier says positive, else 1 - p(negative).

    For a binary classifier p(negative) = 1 - p(positive), so a negative call
    gives r = p(positive). Range [0, 2]; positive calls all rank above negative ones.
    """
    p = np.asarray(p_positive, dtype=np.float64)
    bad = first_non_probability(p)
    if bad is not None:
        raise ValueError(
            f"classifier returned p(positive)={p.flat[bad]!r} at row {bad}: not a probability"
        )
    says_positive = p >= 0.5
    return np.where(says_positive, 1.0 + p, 1.0 - (1.0 - p))


def good_probability(p: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """The probability of the good label from a scorer's probability of its label: itself
    when a higher probability is better (p(positive)), else its complement (p(toxic))."""
    p = np.asarray(p, dtype=np.float64)
    return p if higher_is_better else 1.0 - p
