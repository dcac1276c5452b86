"""Unit tests for pipeline.math.losses: the DPO / ODPO preference loss and IPO."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.math.losses import LOSSES, preference_loss, preference_terms, uses_offset


def _logps(*values: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def _random_batch(n: int = 64, seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    # Sequence log-probabilities are negative sums over tokens; spread them widely.
    return [-(torch.rand(n, generator=g, dtype=dtype) * 40.0) for _ in range(4)]


def test_zero_margin_gives_log_two():
    # policy == reference for both responses: margin m = 0, loss = -log sigmoid(0)
    # = -log(1/2) = log 2 = 0.693147...
    pc, pr = _logps(-5.0), _logps(-7.0)
    loss = preference_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(0.6931471805599453, abs=1e-12)


def test_hand_worked_case_with_offset():
    # beta = 0.5
    # chosen:   policy -1.0, reference -2.0 -> r_w = 0.5 * (-1.0 - -2.0) = 0.5
    # rejected: policy -3.0, reference -2.5 -> r_l = 0.5 * (-3.0 - -2.5) = -0.25
    # margin r_w - r_l = 0.75; offset 0.25 -> m = 0.5
    # loss = -log sigmoid(0.5) = log(1 + exp(-0.5)) = log(1 + 0.6065306597) = 0.4740769842
    loss = preference_loss(
        _logps(-1.0), _logps(-3.0), _logps(-2.0), _logps(-2.5), beta=0.5, offset=0.25
    )
    assert loss.item() == pytest.approx(0.4740769841801067, abs=1e-12)
    # Same pair without offset: m = 0.75, exp(-0.75) = 0.4723665527,
    # loss = log(1 + 0.4723665527) = log(1.4723665527) = 0.3868710061
    dpo = preference_loss(_logps(-1.0), _logps(-3.0), _logps(-2.0), _logps(-2.5), beta=0.5)
    assert dpo.item() == pytest.approx(math.log(1.0 + math.exp(-0.75)), abs=1e-12)
    assert dpo.item() == pytest.approx(0.3868710061, abs=1e-9)


def test_matches_independent_formula_on_random_inputs():
    pc, pr, rc, rr = _random_batch(n=200, seed=1)
    g = torch.Generator().manual_seed(2)
    offset = torch.rand(200, generator=g, dtype=torch.float64) * 3.0
    beta = 0.37
    loss = preference_loss(pc, pr, rc, rr, beta=beta, offset=offset)
    assert loss.shape == (200,)
    for k in range(200):
        m = (
            beta * ((pc[k].item() - rc[k].item()) - (pr[k].item() - rr[k].item()))
            - offset[k].item()
        )
        # log(1 + exp(-m)), written stably in plain Python for large |m|
        expected = math.log1p(math.exp(-m)) if m > -30 else -m + math.log1p(math.exp(m))
        assert loss[k].item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_loss_is_finite_for_extreme_margins():
    pc = _logps(0.0, -1000.0, dtype=torch.float32)
    pr = _logps(-1000.0, 0.0, dtype=torch.float32)
    ref = _logps(0.0, 0.0, dtype=torch.float32)
    loss = preference_loss(pc, pr, ref, ref, beta=1.0)
    assert torch.isfinite(loss).all()
    # m = +1000: loss ~ 0; m = -1000: loss ~ 1000
    assert loss[0].item() == pytest.approx(0.0, abs=1e-6)
    assert loss[1].item() == pytest.approx(1000.0, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_odpo_with_zero_offset_is_exactly_dpo(dtype):
    pc, pr, rc, rr = _random_batch(n=50, seed=3, dtype=dtype)
    dpo = preference_loss(pc, pr, rc, rr, beta=0.2)
    assert torch.equal(preference_loss(pc, pr, rc, rr, beta=0.2, offset=None), dpo)
    assert torch.equal(preference_loss(pc, pr, rc, rr, beta=0.2, offset=0.0), dpo)
    assert torch.equal(preference_loss(pc, pr, rc, rr, beta=0.2, offset=torch.zeros(50)), dpo)
    # alpha = 0 through the offset module (float64 zeros, cast to the loss dtype)
    from pipeline.math.offsets import compute_offset

    scores_w = torch.linspace(1.1, 2.0, 50)
    scores_l = torch.linspace(0.0, 1.0, 50)
    for name in ("log_diff", "log_ratio", "diff"):
        lo = 0.01 if name == "log_ratio" else 0.0
        off = compute_offset(scores_w, scores_l + lo, name, alpha=0.0)
        assert torch.equal(preference_loss(pc, pr, rc, rr, beta=0.2, offset=off), dpo)
        out = LOSSES["odpo"](pc, pr, rc, rr, beta=0.2, offset=off)
        assert torch.equal(out.loss, dpo)


def test_loss_increases_with_offset():
    pc, pr, rc, rr = _random_batch(n=30, seed=4)
    losses = [
        preference_loss(pc, pr, rc, rr, beta=0.5, offset=float(o))
        for o in (-1.0, 0.0, 0.5, 1.0, 3.0)
    ]
    for smaller, larger in zip(losses, losses[1:], strict=False):
        assert (larger > smaller).all()
    # Shifting the offset by d is the same as shifting the margin by -d.
    shifted = preference_loss(pc, pr, rc, rr, beta=0.5, offset=1.0)
    # With beta = 0.5, lowering the chosen policy log-prob by 2.0 lowers r_w by exactly 1.0.
    same = preference_loss(pc - 2.0, pr, rc, rr, beta=0.5)
    torch.testing.assert_close(shifted, same, rtol=1e-12, atol=1e-12)


def test_per_pair_offset_broadcasts_per_row():
    pc, pr, rc, rr = (
        _logps(-1.0, -1.0),
        _logps(-2.0, -2.0),
        _logps(-1.5, -1.5),
        _logps(-1.5, -1.5),
    )
    loss = preference_loss(pc, pr, rc, rr, beta=1.0, offset=torch.tensor([0.0, 1.0]))
    # r_w = 1.0 * (-1.0 - -1.5) = 0.5, r_l = 1.0 * (-2.0 - -1.5) = -0.5, margin 1.0;
    # minus offsets 0 and 1 -> m = 1 and 0 -> losses log(1 + e^-1) and log 2
    assert loss[0].item() == pytest.approx(math.log(1.0 + math.exp(-1.0)), abs=1e-12)
    assert loss[1].item() == pytest.approx(math.log(2.0), abs=1e-12)


def test_no_gradient_flows_into_offset():
    pc, pr, rc, rr = _random_batch(n=8, seed=5)
    pc.requires_grad_(True)
    offset = torch.full((8,), 0.7, dtype=torch.float64, requires_grad=True)
    loss = preference_loss(pc, pr, rc, rr, beta=0.3, offset=offset)
    loss.sum().backward()
    assert offset.grad is None
    assert pc.grad is not None


def test_no_gradient_flows_into_offset_of_other_dtype():
    # A float64 offset with float32 log-probs is cast: still no gradient into it.
    pc, pr, rc, rr = _random_batch(n=8, seed=6, dtype=torch.float32)
    pc.requires_grad_(True)
    offset = torch.full((8,), 0.7, dtype=torch.float64, requires_grad=True)
    preference_loss(pc, pr, rc, rr, beta=0.3, offset=offset).sum().backward()
    assert offset.grad is None


def test_gradient_matches_hand_formula():
    pc, pr, rc, rr = _random_batch(n=16, seed=7)
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    rc.requires_grad_(True)
    offset = torch.linspace(-1.0, 2.0, 16, dtype=torch.float64)
    beta = 0.8
    preference_loss(pc, pr, rc, rr, beta=beta, offset=offset).sum().backward()
    with torch.no_grad():
        m = beta * ((pc - rc) - (pr - rr)) - offset
        # d/dm [-log sigmoid(m)] = -sigmoid(-m); dm/dpc = beta, dm/dpr = -beta
        expected_chosen = -beta * torch.sigmoid(-m)
    torch.testing.assert_close(pc.grad, expected_chosen, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pr.grad, -expected_chosen, rtol=1e-10, atol=1e-12)
    # The reference enters with the opposite sign of the policy.
    torch.testing.assert_close(rc.grad, -expected_chosen, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, -0.1, -5])
def test_non_positive_beta_raises(beta):
    pc, pr, rc, rr = _random_batch(n=4, seed=8)
    with pytest.raises(ValueError, match="beta"):
        preference_loss(pc, pr, rc, rr, beta=beta)
    for name in ("dpo", "odpo", "ipo", "ipo_offset"):
        with pytest.raises(ValueError, match="beta"):
            LOSSES[name](pc, pr, rc, rr, beta=beta, offset=None)


def test_registry_names():
    assert set(LOSSES) == {"dpo", "odpo", "ipo", "ipo_offset"}
    assert {n for n in LOSSES if uses_offset(n)} == {"odpo", "ipo_offset"}


def test_dpo_ignores_offset_and_odpo_uses_it():
    pc, pr, rc, rr = _random_batch(n=20, seed=9)
    offset = torch.full((20,), 1.5, dtype=torch.float64)
    plain = preference_loss(pc, pr, rc, rr, beta=0.4)
    with_offset = preference_loss(pc, pr, rc, rr, beta=0.4, offset=offset)

    dpo = LOSSES["dpo"](pc, pr, rc, rr, beta=0.4, offset=offset)
    assert torch.equal(dpo.loss, plain)
    assert torch.equal(LOSSES["dpo"](pc, pr, rc, rr, beta=0.4).loss, plain)

    odpo = LOSSES["odpo"](pc, pr, rc, rr, beta=0.4, offset=offset)
    assert torch.equal(odpo.loss, with_offset)
    assert (odpo.loss > dpo.loss).all()
    assert torch.equal(LOSSES["odpo"](pc, pr, rc, rr, beta=0.4, offset=None).loss, plain)


def test_returned_rewards_are_beta_times_log_ratio():
    pc, pr, rc, rr = _random_batch(n=10, seed=10)
    pc.requires_grad_(True)
    beta = 0.25
    for out in (
        preference_terms(pc, pr, rc, rr, beta, 0.3),
        LOSSES["dpo"](pc, pr, rc, rr, beta=beta),
        LOSSES["odpo"](pc, pr, rc, rr, beta=beta, offset=torch.ones(10, dtype=torch.float64)),
        LOSSES["ipo"](pc, pr, rc, rr, beta=beta),
        LOSSES["ipo_offset"](pc, pr, rc, rr, beta=beta, offset=torch.ones(10, dtype=torch.float64)),
    ):
        torch.testing.assert_close(
            out.chosen_rewards, beta * (pc.detach() - rc), rtol=0, atol=1e-12
        )
        torch.testing.assert_close(out.rejected_rewards, beta * (pr - rr), rtol=0, atol=1e-12)
        # Logged rewards are detached; the loss is not.
        assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
        assert out.loss.requires_grad
        # The offset is not part of the reward.
        assert out.loss.shape == out.chosen_rewards.shape == (10,)


# ---- IPO ------------------------------------------------------------------------------
# beta = 0.5 throughout the hand-worked cases, so 1/(2 beta) = 1.
# chosen:   policy -1.0, reference -2.0 -> log-ratio +1.0
# rejected: policy -3.0, reference -2.0 -> log-ratio -1.0; h = 1.0 - (-1.0) = 2.0
IPO_PAIR = (-1.0, -3.0, -2.0, -2.0)


def _ipo(name: str, beta: float = 0.5, offset=None):
    return LOSSES[name](*(_logps(v) for v in IPO_PAIR), beta=beta, offset=offset)


def test_ipo_hand_worked():
    # target 1/(2 * 0.5) = 1; loss = (h - 1)^2 = (2 - 1)^2 = 1
    assert _ipo("ipo").loss.item() == pytest.approx(1.0, abs=1e-12)
    # beta = 0.25: target 1/(2 * 0.25) = 2 = h, loss 0
    assert _ipo("ipo", beta=0.25).loss.item() == pytest.approx(0.0, abs=1e-12)
    # beta = 1: target 1/2; loss = (2 - 0.5)^2 = 2.25
    assert _ipo("ipo", beta=1.0).loss.item() == pytest.approx(2.25, abs=1e-12)
    # IPO ignores an offset even if given.
    assert _ipo("ipo", offset=0.5).loss.item() == pytest.approx(1.0, abs=1e-12)


def test_ipo_offset_hand_worked():
    # offset 0.5: target (1/2 + 0.5) / 0.5 = 2 = h, loss 0; there the reward margin
    # 0.5 * 1.0 - 0.5 * (-1.0) = 1 is 1/2 + offset
    out = _ipo("ipo_offset", offset=0.5)
    assert out.loss.item() == pytest.approx(0.0, abs=1e-12)
    assert (out.chosen_rewards - out.rejected_rewards).item() == pytest.approx(1.0, abs=1e-12)
    # offset 1.5: target (0.5 + 1.5) / 0.5 = 4; loss = (2 - 4)^2 = 4
    assert _ipo("ipo_offset", offset=1.5).loss.item() == pytest.approx(4.0, abs=1e-12)
    # offset 0: target 1, loss 1, as IPO; None is offset 0
    assert _ipo("ipo_offset", offset=0.0).loss.item() == pytest.approx(1.0, abs=1e-12)
    assert _ipo("ipo_offset").loss.item() == pytest.approx(1.0, abs=1e-12)
    # Per-pair offsets 0 and 0.5 in one batch: losses 1 and 0.
    pc, pr, rc, rr = (_logps(v, v) for v in IPO_PAIR)
    out = LOSSES["ipo_offset"](pc, pr, rc, rr, beta=0.5, offset=torch.tensor([0.0, 0.5]))
    assert out.loss.tolist() == pytest.approx([1.0, 0.0], abs=1e-12)


def test_ipo_matches_independent_formula_on_random_inputs():
    pc, pr, rc, rr = _random_batch(n=100, seed=11)
    offset, beta = torch.linspace(0.0, 2.0, 100, dtype=torch.float64), 0.3
    h = ((pc - rc) - (pr - rr)).tolist()  # the unscaled log-ratio margin
    plain = [(x - 1 / (2 * beta)) ** 2 for x in h]
    shifted = [(x - (0.5 + o) / beta) ** 2 for x, o in zip(h, offset.tolist(), strict=True)]
    got = LOSSES["ipo"](pc, pr, rc, rr, beta=beta).loss.tolist()
    assert got == pytest.approx(plain, rel=1e-10)
    got = LOSSES["ipo_offset"](pc, pr, rc, rr, beta=beta, offset=offset).loss.tolist()
    assert got == pytest.approx(shifted, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ipo_offset_with_zero_offset_is_exactly_ipo(dtype):
    pc, pr, rc, rr = _random_batch(n=50, seed=12, dtype=dtype)
    ipo = LOSSES["ipo"](pc, pr, rc, rr, beta=0.2).loss
    for off in (None, 0.0, torch.zeros(50), torch.zeros(50, dtype=torch.float64)):
        got = LOSSES["ipo_offset"](pc, pr, rc, rr, beta=0.2, offset=off).loss
        assert torch.equal(got, ipo)
    # alpha = 0 through the offset module, as for ODPO
    from pipeline.math.offsets import compute_offset

    off = compute_offset(torch.linspace(1.1, 2.0, 50), torch.linspace(0.0, 1.0, 50), "diff", 0.0)
    assert torch.equal(LOSSES["ipo_offset"](pc, pr, rc, rr, beta=0.2, offset=off).loss, ipo)


def _ipo_grads(name: str, beta: float, offset=None) -> list[float]:
    """d loss / d (policy chosen, policy rejected, ref chosen, ref rejected) on IPO_PAIR."""
    logps = [_logps(v).requires_grad_(True) for v in IPO_PAIR]
    LOSSES[name](*logps, beta=beta, offset=offset).loss.sum().backward()
    return [t.grad.item() for t in logps]


def test_ipo_gradient_signs():
    # Under the target (h = 2 < 1/(2 * 0.125) = 4): d/dpc (h - t)^2 = 2 (h - t) = -4, so
    # descent raises the chosen log-prob and lowers the rejected one (+4), as DPO does; the
    # reference enters with the opposite sign (d/drc = +4, d/drr = -4).
    assert _ipo_grads("ipo", 0.125) == pytest.approx([-4.0, 4.0, 4.0, -4.0])
    # Past the target (h = 2 > 1 at beta 0.5): unlike DPO, IPO pulls the margin back:
    # 2 * (2 - 1) = +2 on the chosen log-prob, -2 on the rejected one.
    assert _ipo_grads("ipo", 0.5) == pytest.approx([2.0, -2.0, -2.0, 2.0])
    # An offset that raises the target past h flips the sign back: offset 1.5 at beta 0.5
    # gives target (0.5 + 1.5) / 0.5 = 4 and 2 * (2 - 4) = -4 on the chosen log-prob.
    offset = torch.tensor([1.5], dtype=torch.float64, requires_grad=True)
    assert _ipo_grads("ipo_offset", 0.5, offset) == pytest.approx([-4.0, 4.0, 4.0, -4.0])
    assert offset.grad is None  # no gradient into the offset
