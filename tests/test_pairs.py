"""Unit tests for pipeline.math.pairing: every distinct-score pair, once, and subsampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.math.pairing import all_pairs, subsample


def _brute_force(scores: np.ndarray) -> set[tuple[int, int, int]]:
    out = set()
    for p, row in enumerate(scores):
        for a, b in itertools.combinations(range(len(row)), 2):
            if row[a] > row[b]:
                out.add((p, a, b))
            elif row[b] > row[a]:
                out.add((p, b, a))
    return out


def test_four_distinct_scores_give_six_pairs():
    scores = np.array([[0.3, 1.9, 0.1, 1.2]])
    pairs = all_pairs(scores)
    assert pairs.dtype == np.int64
    assert pairs.shape == (6, 3)
    expected = {(0, 1, 0), (0, 0, 2), (0, 3, 0), (0, 1, 2), (0, 1, 3), (0, 3, 2)}
    assert {tuple(r) for r in pairs.tolist()} == expected


def test_one_tie_gives_five_pairs():
    scores = np.array([[0.5, 1.5, 0.5, 1.0]])
    pairs = all_pairs(scores)
    assert len(pairs) == 5
    assert (0, 0, 2) not in {tuple(r) for r in pairs.tolist()}
    assert (0, 2, 0) not in {tuple(r) for r in pairs.tolist()}


def test_higher_score_is_chosen_and_each_pair_once():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(12, 6)).astype(float)  # many ties on purpose
    pairs = all_pairs(scores)
    rows = [tuple(r) for r in pairs.tolist()]
    assert len(rows) == len(set(rows))
    unordered = [(p, min(c, r), max(c, r)) for p, c, r in rows]
    assert len(unordered) == len(set(unordered))
    for p, c, r in rows:
        assert scores[p, c] > scores[p, r]
    assert set(rows) == _brute_force(scores)


def test_counts_per_prompt():
    scores = np.array(
        [
            [0.1, 0.2, 0.3, 0.4],  # 4 distinct: C(4,2) = 6
            [1.0, 1.0, 2.0, 3.0],  # one tie: 5
            [1.0, 1.0, 1.0, 1.0],  # all tied: 0
            [2.0, 2.0, 1.0, 1.0],  # two ties: 4
        ]
    )
    pairs = all_pairs(scores)
    counts = np.bincount(pairs[:, 0], minlength=4)
    assert counts.tolist() == [6, 5, 0, 4]


def test_uses_every_response_not_just_the_first_two():
    # The authors' code paired only responses 0 and 1; all C(6,2) = 15 pairs are expected.
    scores = np.arange(6, dtype=float)[None, :] * np.ones((3, 1))
    pairs = all_pairs(scores)
    assert len(pairs) == 3 * 15
    used = set(pairs[:, 1].tolist()) | set(pairs[:, 2].tolist())
    assert used == set(range(6))
    # Pairs not involving responses 0 or 1 exist.
    assert any(c > 1 and r > 1 for _, c, r in pairs.tolist())


def test_prompt_order_is_deterministic():
    scores = np.array([[1.0, 0.0, 2.0], [0.0, 2.0, 1.0]])
    pairs = all_pairs(scores)
    assert pairs[:, 0].tolist() == sorted(pairs[:, 0].tolist())
    assert np.array_equal(all_pairs(scores), pairs)


def test_no_pairs_possible():
    assert all_pairs(np.ones((3, 4))).shape == (0, 3)
    assert all_pairs(np.zeros((0, 4))).shape == (0, 3)


@pytest.fixture
def pairs() -> np.ndarray:
    rng = np.random.default_rng(1)
    return all_pairs(rng.normal(size=(10, 6)))  # 150 pairs


def test_subsample_is_deterministic(pairs):
    a = subsample(pairs, 40, seed=3)
    b = subsample(pairs, 40, seed=3)
    assert np.array_equal(a, b)


def test_subsample_differs_by_seed(pairs):
    a = subsample(pairs, 40, seed=3)
    b = subsample(pairs, 40, seed=4)
    assert not np.array_equal(a, b)


def test_subsample_is_a_subset_without_duplicates(pairs):
    all_rows = {tuple(r) for r in pairs.tolist()}
    sub = subsample(pairs, 40, seed=0)
    assert sub.shape == (40, 3)
    rows = [tuple(r) for r in sub.tolist()]
    assert len(set(rows)) == 40
    assert set(rows) <= all_rows


def test_subsample_of_everything_is_a_permutation(pairs):
    sub = subsample(pairs, len(pairs), seed=5)
    assert sorted(map(tuple, sub.tolist())) == sorted(map(tuple, pairs.tolist()))


def test_subsample_too_many_raises(pairs):
    with pytest.raises(ValueError, match=str(len(pairs))):
        subsample(pairs, len(pairs) + 1, seed=0)
