"""Preference pairs from scored samples: every pair of responses to a prompt
whose scores differ, once each, the higher-scored response as chosen."""

from __future__ import annotations

import numpy as np


def all_pairs(scores: np.ndarray) -> np.ndarray:
    """scores: (n_prompts, n_samples). Returns int array (n_pairs, 3) of
    (prompt, chosen, rejected) for every unordered pair with different scores.
    Ties and NaN scores are excluded. Order is deterministic (prompt, then i < j)."""
    scores = np.asarray(scores)
    n_prompts, n_samples = scores.shape
    i, j = np.triu_indices(n_samples, k=1)
    rows = []
    for p in range(n_prompts):
        s = scores[p]
        # NaN marks a missing response (groups of different sizes): it pairs with nothing.
        keep = (s[i] != s[j]) & ~np.isnan(s[i]) & ~np.isnan(s[j])
        ii, jj = i[keep], j[keep]
        first_wins = s[ii] > s[jj]
        chosen = np.where(first_wins, ii, jj)
        rejected = np.where(first_wins, jj, ii)
        rows.append(np.stack([np.full_like(chosen, p), chosen, rejected], axis=1))
    if not rows:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64)


def subsample(pairs: np.ndarray, n_pairs: int, seed: int) -> np.ndarray:
    """A deterministic random subset of n_pairs rows, in shuffled order (the seed
    also decides training order)."""
    if n_pairs > len(pairs):
        raise ValueError(f"n_pairs={n_pairs} but only {len(pairs)} pairs exist")
    rng = np.random.default_rng(seed)
    return pairs[rng.permutation(len(pairs))[:n_pairs]]
