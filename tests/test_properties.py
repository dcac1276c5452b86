"""Laws that hold for all inputs, checked with hypothesis on drawn inputs (seeded by the
profile below, so a failure reproduces): the losses, the offsets, the Wilson interval and
the frontier."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.math.frontier import frontier_area, pareto_frontier
from pipeline.math.losses import LOSSES
from pipeline.math.offsets import OFFSETS, compute_offset
from pipeline.math.stats import wilson

# Deterministic: the suite never fails by chance, and a failing draw is printed to rerun.
settings.register_profile("pipeline", derandomize=True, max_examples=200, deadline=None)
settings.load_profile("pipeline")

logp = st.floats(-60, 0, allow_nan=False, width=64)
beta = st.floats(0.01, 5, allow_nan=False)
alpha = st.floats(0, 3, allow_nan=False)


def _loss(name: str, pc, pr, rc, rr, b, offset=None) -> float:
    t = [torch.tensor([x], dtype=torch.float64) for x in (pc, pr, rc, rr)]
    off = None if offset is None else torch.tensor([offset], dtype=torch.float64)
    return float(LOSSES[name].fn(*t, beta=b, offset=off).loss[0])


@given(logp, logp, logp, logp, beta)
def test_odpo_with_alpha_zero_is_dpo(pc, pr, rc, rr, b) -> None:
    zero = float(compute_offset([0.9], [0.1], "log_diff", 0.0)[0])
    assert _loss("odpo", pc, pr, rc, rr, b, zero) == _loss("dpo", pc, pr, rc, rr, b)


@given(logp, logp, logp, logp, beta, st.floats(0.01, 10), st.floats(-3, 3))
def test_dpo_and_odpo_fall_as_the_chosen_log_ratio_rises(pc, pr, rc, rr, b, step, offset) -> None:
    for name, off in (("dpo", None), ("odpo", offset)):
        before = _loss(name, pc, pr, rc, rr, b, off)
        after = _loss(name, pc + step, pr, rc, rr, b, off)
        assert after <= before


@given(logp, logp, logp, logp, beta, st.floats(0.01, 3))
def test_a_larger_offset_asks_for_more_so_the_odpo_loss_rises(pc, pr, rc, rr, b, extra) -> None:
    assert _loss("odpo", pc, pr, rc, rr, b, 0.5 + extra) >= _loss("odpo", pc, pr, rc, rr, b, 0.5)


@given(
    st.sampled_from(sorted(OFFSETS)),
    st.floats(0.01, 10),
    st.floats(0.001, 5),
    st.floats(0.001, 5),
    alpha,
)
def test_each_offset_is_increasing_in_the_score_gap(name, rejected, gap, more, a) -> None:
    chosen, wider = rejected + gap, rejected + gap + more
    near = float(compute_offset([chosen], [rejected], name, a)[0])
    far = float(compute_offset([wider], [rejected], name, a)[0])
    assert far >= near
    if a > 0:
        assert far > near or math.isclose(far, near, rel_tol=1e-9, abs_tol=1e-12)


@given(st.integers(0, 400), st.integers(1, 400))
def test_wilson_contains_the_point_estimate(wins, n) -> None:
    wins = min(wins, n)
    low, high = wilson(wins, n)
    assert 0.0 <= low <= wins / n <= high <= 1.0


@given(st.floats(0.05, 0.95), st.integers(5, 200))
def test_wilson_narrows_with_n(p, n) -> None:
    small, large = wilson(round(p * n), n), wilson(round(p * 4 * n), 4 * n)
    assert large[1] - large[0] < small[1] - small[0]


runs = st.lists(
    st.tuples(st.floats(0, 20, allow_nan=False), st.floats(0, 1, allow_nan=False)),
    min_size=1,
    max_size=12,
)


@given(runs, st.floats(0, 1), st.floats(0.5, 25), st.floats(0, 5), st.floats(0, 1))
def test_a_dominated_run_leaves_the_frontier_and_its_area_unchanged(
    points, floor, budget, more_kl, less_reward
) -> None:
    kl, reward = [p[0] for p in points], [p[1] for p in points]
    front = pareto_frontier(kl, reward)
    k = int(front[0])  # a run on the frontier; the new one sits to its lower right
    dominated_kl, dominated_reward = kl[k] + more_kl + 1e-6, reward[k] - less_reward - 1e-6
    kl2, reward2 = [*kl, dominated_kl], [*reward, dominated_reward]
    assert list(pareto_frontier(kl2, reward2)) == list(front)
    before = frontier_area(kl, reward, budget, floor)
    assert frontier_area(kl2, reward2, budget, floor) == before


@given(runs, st.floats(0, 1), st.floats(0.5, 25))
def test_the_frontier_area_lies_between_floor_and_best(points, floor, budget) -> None:
    kl, reward = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    area = frontier_area(kl, reward, budget, floor)
    assert floor * budget - 1e-9 <= area <= max(floor, reward.max()) * budget + 1e-9
