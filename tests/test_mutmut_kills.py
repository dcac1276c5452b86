"""Tests written against mutants that `make mutmut` found alive (results/mutants/mutmut.md):
each pins a behaviour of the pure layers that no other fast test did."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.math.stats import bootstrap_ci, wilson

# ---- statistics -------------------------------------------------------------------------


@pytest.mark.parametrize(("wins", "n"), [(5, 3), (-1, 3), (0, -1)])
def test_wilson_refuses_counts_that_are_not_a_proportion(wins: int, n: int) -> None:
    with pytest.raises(ValueError, match=rf"0 <= wins <= n, got wins={wins}, n={n}"):
        wilson(wins, n)


def test_the_bootstrap_is_ten_thousand_resamples_of_a_fixed_seed() -> None:
    """The study's intervals are reproducible: 10,000 resampled means from default_rng(0),
    their 2.5th and 97.5th percentiles."""
    values = np.array([0.3, -0.1, 0.25, 0.05, 0.4])
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, values.size, size=(10_000, values.size))].mean(axis=1)
    assert bootstrap_ci(values) == tuple(np.percentile(means, [2.5, 97.5]))
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values)
