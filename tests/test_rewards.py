"""Unit tests for pipeline.math.rewards: the good label's probability and the training score."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.math.rewards import good_probability, training_score


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.9, 1.9),  # positive call: 1 + 0.9
        (0.2, 0.2),  # negative call: 1 - p(negative) = 1 - 0.8 = 0.2
        (0.5, 1.5),  # 0.5 counts as positive: 1 + 0.5
        (0.0, 0.0),  # 1 - 1
        (1.0, 2.0),  # 1 + 1
        (0.49, 0.49),  # 1 - 0.51
    ],
)
def test_hand_values(p, expected):
    assert float(training_score(np.array([p]))[0]) == pytest.approx(expected, abs=1e-12)


def test_vector_input_and_range():
    p = np.linspace(0.0, 1.0, 1001)
    r = training_score(p)
    assert r.shape == p.shape
    assert r.dtype == np.float64
    assert (r >= 0).all() and (r <= 2).all()
    # Monotone, and every positive call ranks above every negative call.
    assert (np.diff(r) > 0).all()
    assert r[p >= 0.5].min() > r[p < 0.5].max()


def test_accepts_lists_and_empty():
    assert training_score([0.9, 0.2]).tolist() == pytest.approx([1.9, 0.2])
    assert training_score(np.array([])).shape == (0,)


@pytest.mark.parametrize("bad", [np.nan, -0.01, 1.01, np.inf, -np.inf])
def test_invalid_probability_raises(bad):
    with pytest.raises(ValueError, match="row 1"):
        training_score(np.array([0.3, bad, 0.7]))


def test_good_probability_is_the_scorers_own_when_higher_is_better() -> None:
    p = np.array([0.0, 0.3, 0.9])
    np.testing.assert_array_equal(good_probability(p, True), p)


def test_good_probability_is_the_complement_when_lower_is_better() -> None:
    # p(toxic) 0.9 is a bad continuation: its good label (non-toxic) has 0.1.
    got = good_probability(np.array([0.0, 0.25, 0.9]), False)
    np.testing.assert_allclose(got, [1.0, 0.75, 0.1], atol=1e-12)
    assert got.dtype == np.float64
