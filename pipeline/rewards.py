"""Turning a classifier's p(positive) into the paper's training score."""

from __future__ import annotations

import numpy as np


def training_score(p_positive: np.ndarray) -> np.ndarray:
    """r = 1 + p(positive) if the classifier says positive, else 1 - p(negative).

    For a binary classifier p(negative) = 1 - p(positive), so a negative call
    gives r = p(positive). Range [0, 2]; positive calls all rank above negative ones.
    """
    p = np.asarray(p_positive, dtype=np.float64)
    if p.size and (not np.isfinite(p).all() or (p < 0).any() or (p > 1).any()):
        bad = int(np.flatnonzero(~np.isfinite(p) | (p < 0) | (p > 1))[0])
        raise ValueError(
            f"classifier returned p(positive)={p.flat[bad]!r} at row {bad}: not a probability"
        )
    says_positive = p >= 0.5
    return np.where(says_positive, 1.0 + p, 1.0 - (1.0 - p))
