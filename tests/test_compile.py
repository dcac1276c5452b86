"""``scale.train.compile``: the compiled transformer and optimizer step train the same
model as the eager loop, through a warm-up (the learning rate changes every step), and
a checkpoint written by either resumes in the other."""

from __future__ import annotations

import pytest
import torch

from pipeline.modeling import models
from pipeline.modeling.checkpoint import loop_state, restore_loop
from pipeline.modeling.optim import compiled_step, make_optimizer
from pipeline.stages import train
from tests.test_performance import _Curve, _micro_training_inputs, _tiny_lm, _train_cfg

# RMSprop's first steps divide by a running mean of squared gradients that is still tiny,
# so a rounding difference in one step grows in the next; at 1e-3 the two updates agree
# to 1e-4 of how far the weights move.
LR = 1e-3


def _update(compiled: bool, steps: int, saved: dict | None = None):
    """RMSprop over a tiny model with a 3-step warm-up; returns the model and its state."""
    from transformers import get_constant_schedule_with_warmup

    model = _tiny_lm()
    opt = make_optimizer("rmsprop", model.parameters(), LR)
    sched = get_constant_schedule_with_warmup(opt, 3)
    gen = torch.Generator().manual_seed(0)
    if saved is not None:
        restore_loop(saved, model, opt, sched, gen)
    step = compiled_step(opt) if compiled else opt.step
    ids = torch.arange(1, 9)[None]
    for _ in range(steps):
        opt.zero_grad()
        model(ids, labels=ids).loss.backward()
        step()
        sched.step()
    return model, loop_state(model, opt, sched, gen, step=steps)


def test_compiled_optimizer_step_matches_the_eager_update_through_warm_up() -> None:
    eager, _ = _update(False, 5)
    compiled, state = _update(True, 5)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        assert torch.allclose(a, b, atol=2e-5), name
    start = _tiny_lm().parameters()
    moved = max((a - b).abs().max() for a, b in zip(eager.parameters(), start, strict=True))
    assert moved > 1e-2  # the updates are large against the tolerance
    # The tensor learning rate is saved as the float an eager resume expects.
    assert all(type(g["lr"]) is float for g in state["optimizer"]["param_groups"])


@pytest.mark.parametrize("first,then", [(True, False), (False, True)])
def test_a_checkpoint_resumes_across_compile_settings(first: bool, then: bool) -> None:
    _, half = _update(first, 2)
    resumed, _ = _update(then, 3, saved=half)
    straight, _ = _update(False, 5)
    for a, b in zip(resumed.parameters(), straight.parameters(), strict=True):
        assert torch.allclose(a, b, atol=2e-5)


def test_a_fused_optimizer_is_left_as_it_is() -> None:
    opt = make_optimizer("adamw", _tiny_lm().parameters(), 1e-3)
    assert compiled_step(opt) == opt.step
    assert type(opt.param_groups[0]["lr"]) is float


def test_compiled_training_gives_the_eager_training_curve() -> None:
    s, p, ref = _micro_training_inputs(18)  # 3 steps of 6 pairs
    curves = []
    for compiled in (False, True):
        cfg = _train_cfg(optimizer="rmsprop", warmup_steps=2, compile=compiled)
        policy = models.disable_dropout(_tiny_lm()).train()
        curve = _Curve()
        offsets = train.pair_offsets(cfg, p)
        train.train_pairs(cfg, policy, s, p, ref, offsets, 0, torch.Generator(), [curve])
        curves.append(curve.rows)
    for eager, compiled in zip(*curves, strict=True):
        for name in ("train/loss", "train/grad_norm", "train/margins"):
            assert eager[name] == pytest.approx(compiled[name], rel=1e-4, abs=1e-5), name
