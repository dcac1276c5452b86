"""Tests written against mutants that `make mutmut` found alive (results/mutants/mutmut.md):
each pins a behaviour of the pure layers that no other fast test did."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.math import frontier, kl, losses, offsets, pairing, rewards
from pipeline.math.stats import bootstrap_ci, wilson
from pipeline.scoring.verdicts import JudgeReport, Verdict

# ---- statistics -------------------------------------------------------------------------


@pytest.mark.parametrize(("wins", "n"), [(5, 3), (-1, 3), (0, -1)])
def test_wilson_refuses_counts_that_are_not_a_proportion(wins: int, n: int) -> None:
    with pytest.raises(ValueError, match=rf"0 <= wins <= n, got wins={wins}, n={n}"):
        wilson(wins, n)


def test_the_bootstrap_is_ten_thousand_resamples_of_a_fixed_seed() -> None:
    """The study's intervals are reproducible: 10,000 resampled means from default_rng(0),
    their 2.5th and 97.5th percentiles."""
    # Continuous values: the resampled means are all distinct, so any other count, seed or
    # percentile moves a bound.
    values = np.random.default_rng(7).normal(0.1, 0.2, 40)
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, values.size, size=(10_000, values.size))].mean(axis=1)
    assert bootstrap_ci(values) == tuple(np.percentile(means, [2.5, 97.5]))
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values)


def test_judge_report_counts_every_field_by_name() -> None:
    verdicts = [Verdict("a", True, ""), Verdict("b", False, ""), Verdict("c", None, "?"),
                Verdict("d", True, "")]  # fmt: skip
    row = JudgeReport("offline", verdicts, calls=5, cached=2, retries=1, ties=3).counts()
    low, high = wilson(2, 3)
    assert row == {"judge": "offline", "wins": 2, "n": 3, "win_rate": 2 / 3, "ci_low": low,
                   "ci_high": high, "unparseable": 1, "ties": 3, "calls": 5, "cached": 2,
                   "retries": 1}  # fmt: skip
    empty = JudgeReport("offline", [Verdict("a", None, "?")]).counts()
    assert empty["n"] == 0 and math.isnan(empty["win_rate"]) and math.isnan(empty["ci_low"])


# ---- the frontier -----------------------------------------------------------------------


def test_best_within_a_budget() -> None:
    kl_, reward = [0.5, 1.0, 2.0, np.nan, 0.2], [0.6, 0.8, 0.9, 0.99, np.nan]
    assert frontier.best_within(kl_, reward, 1.0) == 0.8  # KL exactly at the budget counts
    assert frontier.best_within(kl_, reward, 0.99) == 0.6
    assert frontier.best_within(kl_, reward, 5.0) == 0.9  # the NaN rows take no part
    assert math.isnan(frontier.best_within(kl_, reward, 0.4))
    with pytest.raises(ValueError, match="same length"):
        frontier.best_within([0.1], [0.2, 0.3], 1.0)


@pytest.mark.parametrize(("kl_", "reward"), [([0.1, 0.2], [0.3]), ([[0.1, 0.2]], [[0.3, 0.4]])])
def test_the_frontier_refuses_arrays_that_are_not_matching_vectors(kl_, reward) -> None:
    with pytest.raises(ValueError, match=r"kl and reward must be 1-D of the same length, got"):
        frontier.pareto_frontier(kl_, reward)


@pytest.mark.parametrize("budget", [0.0, -1.0, math.inf, math.nan])
def test_the_area_refuses_a_budget_that_is_not_a_positive_number(budget: float) -> None:
    with pytest.raises(ValueError, match="budget must be a finite number > 0, got"):
        frontier.frontier_area([0.5], [0.7], budget, 0.5)


def test_the_area_refuses_a_floor_that_is_not_finite() -> None:
    with pytest.raises(ValueError, match="floor must be finite, got nan"):
        frontier.frontier_area([0.5], [0.7], 2.0, math.nan)


def test_a_negative_kl_estimate_counts_as_zero_in_the_area() -> None:
    # R(x) = 0.7 from x = 0 (not from -0.3): area 2 * 0.7.
    assert frontier.frontier_area([-0.3], [0.7], 2.0, 0.5) == pytest.approx(1.4)


def test_the_frontier_keeps_the_best_of_equal_kl_and_drops_equal_reward_at_more_kl() -> None:
    # Runs 0 and 1 share KL: only the better (1) is on the frontier; run 2 has run 1's
    # reward at more KL: dominated; run 3 has a NaN reward: no part.
    got = frontier.pareto_frontier([0.5, 0.5, 0.9, 0.1], [0.6, 0.7, 0.7, np.nan])
    np.testing.assert_array_equal(got, [1])


# ---- KL, losses, offsets, pairs, rewards ------------------------------------------------


def test_mean_and_se_of_nothing_is_nan_and_of_two_values_has_a_spread() -> None:
    mean, se = kl.mean_and_se(torch.tensor([]))
    assert math.isnan(mean) and math.isnan(se)
    mean, se = kl.mean_and_se(torch.tensor([1.0, 3.0]))
    assert mean == 2.0 and se == pytest.approx(1.0)  # sd sqrt(2) / sqrt(2)


def test_an_offset_enters_the_loss_in_the_logps_precision() -> None:
    logps = [torch.tensor([-1.0], dtype=torch.float64) for _ in range(4)]
    out = losses.preference_terms(*logps, beta=0.1, offset=0.1)
    assert out.loss.dtype == torch.float64
    # A Python float offset is taken in float64, not float32 (0.1 differs by 1.5e-9 there).
    exact = losses.preference_terms(*logps, beta=0.1, offset=torch.tensor(0.1, dtype=torch.float64))
    assert torch.equal(out.loss, exact.loss)
    assert float(out.loss) == pytest.approx(math.log1p(math.exp(0.1)), rel=1e-15)


def test_register_pair_makes_a_plain_and_a_shifted_loss() -> None:
    calls = []

    def terms(*logps, beta, offset):
        calls.append((len(logps), beta, offset))
        return "out"

    try:
        losses.register_pair(terms, "test_plain", "test_shifted")
        plain, shifted = losses.LOSSES["test_plain"], losses.LOSSES["test_shifted"]
        assert (plain.name, plain.fn is not None, plain.uses_offset) == ("test_plain", True, False)
        assert (shifted.name, shifted.uses_offset) == ("test_shifted", True)
        assert plain(1, 2, 3, 4, beta=0.3, offset=0.5) == "out"
        assert shifted(1, 2, 3, 4, beta=0.3, offset=0.5) == "out"
        assert calls == [(4, 0.3, None), (4, 0.3, 0.5)]
        assert losses.uses_offset("test_shifted") and not losses.uses_offset("test_plain")
    finally:
        losses.LOSSES.pop("test_plain", None)
        losses.LOSSES.pop("test_shifted", None)


def test_the_registered_losses_are_the_four_with_their_offset_flags() -> None:
    flags = {name: (loss.name, loss.uses_offset) for name, loss in losses.LOSSES.items()}
    assert flags == {"dpo": ("dpo", False), "odpo": ("odpo", True), "ipo": ("ipo", False),
                     "ipo_offset": ("ipo_offset", True)}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "chosen", "rejected", "message"),
    [
        (
            "log_diff",
            [1.0],
            [1.0],
            r"offset 'log_diff' needs score_chosen > score_rejected \(no ties\)",
        ),
        ("log_ratio", [0.0], [0.5], r"offset 'log_ratio' needs strictly positive scores"),
        ("log_ratio", [1.0], [0.0], r"offset 'log_ratio' needs strictly positive scores"),
    ],
)
def test_an_offset_refuses_where_it_is_undefined_by_name(name, chosen, rejected, message) -> None:
    with pytest.raises(ValueError, match=message):
        offsets.compute_offset(chosen, rejected, name, 1.0)


def test_integer_scores_give_offsets_in_the_default_float_dtype() -> None:
    got = offsets.compute_offset(torch.tensor([3, 5]), torch.tensor([1, 1]), "diff", 0.5)
    assert got.dtype == torch.get_default_dtype()
    torch.testing.assert_close(got, torch.tensor([1.0, 2.0]))


def test_no_pairs_is_an_empty_integer_array() -> None:
    got = pairing.all_pairs(np.zeros((0, 3)))
    assert got.shape == (0, 3) and got.dtype == np.int64


@pytest.mark.parametrize(
    "fn", [rewards.training_score, lambda p: rewards.good_probability(p, False)]
)
def test_scores_are_float64_whatever_the_scorer_gave(fn) -> None:
    assert fn(np.array([0.25, 0.75], dtype=np.float32)).dtype == np.float64
