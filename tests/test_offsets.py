"""Unit tests for pipeline.math.offsets: the ODPO offset scaling functions."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from pipeline import PROJECT_ROOT
from pipeline.math.offsets import OFFSETS, compute_offset

# float64 tensors, so the hand values can be checked to 1e-12
CHOSEN = torch.tensor([2.0, 1.9, 1.7], dtype=torch.float64)
REJECTED = torch.tensor([1.5, 0.2, 0.7], dtype=torch.float64)


def _close(actual: torch.Tensor, expected: list[float]) -> None:
    assert actual.shape == (len(expected),)
    torch.testing.assert_close(
        actual, torch.tensor(expected, dtype=actual.dtype), rtol=1e-12, atol=1e-12
    )


def test_log_diff_hand_values():
    # w - l = 0.5, 1.7, 1.0
    # log(0.5) = -0.6931471806, log(1.7) = 0.5306282511, log(1.0) = 0
    _close(
        compute_offset(CHOSEN, REJECTED, "log_diff", 1.0),
        [-0.6931471805599453, 0.5306282510621704, 0.0],
    )
    # alpha = 2 doubles each value
    _close(
        compute_offset(CHOSEN, REJECTED, "log_diff", 2.0),
        [-1.3862943611198906, 1.0612565021243408, 0.0],
    )


def test_log_ratio_hand_values():
    # log(2.0) - log(1.5) = log(4/3) = 0.2876820725
    # log(1.9) - log(0.2) = log(9.5) = 2.2512917986
    # log(1.7) - log(0.7) = log(17/7) = 0.8873031950
    expected = [
        math.log(2.0) - math.log(1.5),
        math.log(1.9) - math.log(0.2),
        math.log(1.7) - math.log(0.7),
    ]
    assert expected[0] == pytest.approx(0.2876820724517809, abs=1e-12)
    assert expected[1] == pytest.approx(2.251291798606495, abs=1e-12)
    assert expected[2] == pytest.approx(0.8873031950009027, abs=1e-12)
    _close(compute_offset(CHOSEN, REJECTED, "log_ratio", 1.0), expected)
    _close(compute_offset(CHOSEN, REJECTED, "log_ratio", 0.5), [0.5 * e for e in expected])


def test_diff_hand_values():
    # alpha * (w - l) with alpha = 3: 3 * 0.5, 3 * 1.7, 3 * 1.0
    _close(compute_offset(CHOSEN, REJECTED, "diff", 3.0), [1.5, 3 * (1.9 - 0.2), 3.0])
    assert compute_offset(CHOSEN, REJECTED, "diff", 3.0)[1].item() == pytest.approx(5.1, abs=1e-12)


def test_returns_the_scores_dtype():
    out32 = compute_offset(CHOSEN.float(), REJECTED.float(), "diff", 1.0)
    assert out32.dtype == torch.float32 and out32.shape == (3,)
    assert compute_offset(CHOSEN, REJECTED, "diff", 1.0).dtype == torch.float64
    # Python lists give torch's default dtype, like torch.tensor(list)
    from_lists = compute_offset([2.0, 1.9], [1.5, 0.2], "log_diff", 1.0)
    torch.testing.assert_close(from_lists, torch.tensor([math.log(0.5), math.log(1.7)]))


@pytest.mark.parametrize("name", ["log_diff", "log_ratio", "diff"])
def test_alpha_zero_gives_zeros(name):
    out = compute_offset(CHOSEN, REJECTED, name, 0.0)
    assert torch.equal(out, torch.zeros(3, dtype=torch.float64))


def test_tie_with_log_diff_raises_naming_the_pair():
    with pytest.raises(ValueError, match=r"log_diff.*pair 1") as info:
        compute_offset([2.0, 1.25, 1.9], [1.0, 1.25, 0.3], "log_diff", 1.0)
    assert "1.25" in str(info.value)


def test_reversed_pair_with_log_diff_raises():
    with pytest.raises(ValueError, match="pair 0"):
        compute_offset([0.5], [1.0], "log_diff", 1.0)


@pytest.mark.parametrize(
    ("chosen", "rejected", "bad"),
    [
        ([1.0, 2.0], [0.5, 0.0], 1),
        ([-1.0, 2.0], [-2.0, 1.0], 0),
        ([1.0, 2.0, 0.0], [0.5, 1.0, -0.5], 2),
    ],
)
def test_non_positive_scores_with_log_ratio_raise(chosen, rejected, bad):
    with pytest.raises(ValueError, match=rf"log_ratio.*pair {bad}"):
        compute_offset(chosen, rejected, "log_ratio", 1.0)


def test_diff_allows_any_finite_scores():
    _close(compute_offset([0.0, -1.0], [-2.0, -3.0], "diff", 1.0), [2.0, 2.0])


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown offset"):
        compute_offset(CHOSEN, REJECTED, "log_sum", 1.0)


@pytest.mark.parametrize("name", ["log_diff", "log_ratio", "diff"])
def test_negative_alpha_raises(name):
    with pytest.raises(ValueError, match="alpha"):
        compute_offset(CHOSEN, REJECTED, name, -0.5)


def test_registry_matches_config_files():
    assert set(OFFSETS) == {"log_diff", "log_ratio", "diff"}
    conf_dir = PROJECT_ROOT / "conf" / "offset"
    on_disk = {p.stem for p in conf_dir.glob("*.yaml")}
    assert on_disk == set(OFFSETS)
    for name in OFFSETS:
        cfg = OmegaConf.load(conf_dir / f"{name}.yaml")
        assert cfg.name == name
