"""Checkpoints load with ``weights_only=True``: a pickled object in the cache is never
run, and a real loop state (train's and SFT's) still round-trips exactly.

The end-to-end resume checks are in tests/test_reliability.py (kill at every stage,
then resume; a diverging run keeps its checkpoint)."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import get_constant_schedule_with_warmup

from pipeline.modeling import models
from pipeline.modeling.checkpoint import STATE, Checkpointer, loop_state, restore_loop


class TouchOnLoad:
    """Unpickling this creates ``marker``: a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(autouse=True)
def own_rng() -> Iterator[None]:
    """``restore_loop`` sets torch's global generator; keep that inside each test."""
    with torch.random.fork_rng():
        yield


def test_pickled_code_in_a_checkpoint_is_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    torch.save({"step": 3, "payload": TouchOnLoad(marker)}, tmp_path / STATE)
    assert Checkpointer(tmp_path, every=1, stage="train").load() is None
    assert not marker.exists()
    out = capsys.readouterr().out
    assert "[train] ignoring unreadable checkpoint" in out
    assert "weights_only=False" not in out  # torch's advice to trust the file is not passed on
    # The payload is real: the unsafe load it replaced would have run it.
    torch.load(tmp_path / STATE, weights_only=False)
    assert marker.exists()


def test_numpy_and_torn_checkpoints_are_ignored(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, every=1, stage="sft")
    torch.save({"order": np.arange(4)}, tmp_path / STATE)  # what train.py used to save
    assert checkpointer.load() is None
    torch.save({"step": torch.arange(100)}, tmp_path / STATE)
    (tmp_path / STATE).write_bytes((tmp_path / STATE).read_bytes()[:50])
    assert checkpointer.load() is None


def tiny_loop(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, object, torch.Generator]:
    """A micro model, AdamW and warmup schedule after one step, and a seeded generator."""
    torch.manual_seed(seed)
    model = models.small_gpt2(vocab_size=20, n_layer=1, n_embd=8, n_head=2, n_positions=8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = get_constant_schedule_with_warmup(opt, 3)
    gen = torch.Generator().manual_seed(seed)
    step(model, opt, sched, gen)
    return model, opt, sched, gen


def step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched, gen: torch.Generator) -> None:
    """One optimisation step on a batch drawn from ``gen`` (and dropout from torch's RNG)."""
    model.train()
    ids = torch.randint(20, (2, 8), generator=gen)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


TRAIN_POSITION = {
    "step": 1,
    "epoch": 0,
    "next_start": 16,
    "order": torch.from_numpy(np.random.default_rng(0).permutation(40)),
    "rows": [({"train/loss": 0.69, "train/accuracy": 0.5, "train/grad_norm": 1.5}, 0)],
}
SFT_POSITION = {"ema": math.nan, "step": 1}


@pytest.mark.parametrize("position", [TRAIN_POSITION, SFT_POSITION], ids=["train", "sft"])
def test_loop_state_round_trips_and_resumes_bit_identically(tmp_path: Path, position: dict) -> None:
    model, opt, sched, gen = tiny_loop(seed=1)
    checkpointer = Checkpointer(tmp_path, every=1, stage="test")
    checkpointer.save(loop_state(model, opt, sched, gen, **position), step=0)
    saved = checkpointer.load()
    assert saved is not None
    for name, value in position.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(saved[name], value)
        elif isinstance(value, float) and math.isnan(value):
            assert math.isnan(saved[name])
        else:
            assert saved[name] == value
    if "order" in saved:  # what train.py turns it back into
        np.testing.assert_array_equal(saved["order"].numpy(), position["order"].numpy())
        assert saved["order"].numpy().dtype == np.int64
    # A different loop brought to the saved state continues exactly like the original
    # (the original steps first: building the other one reseeds torch's global RNG).
    step(model, opt, sched, gen)
    other = tiny_loop(seed=2)
    restore_loop(saved, *other)
    step(*other)
    for (name, a), b in zip(
        model.state_dict().items(), other[0].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(gen.get_state(), other[3].get_state())
    assert sched.get_last_lr() == other[2].get_last_lr()


@pytest.mark.parametrize(
    "field", [np.arange(3), [np.float64(0.5)], {"loss": np.float32(1.0)}, pathlib.Path(".")]
)
def test_loop_state_refuses_what_weights_only_would_not_load(field: object) -> None:
    model, opt, sched, gen = tiny_loop(seed=0)
    with pytest.raises(TypeError, match="checkpoint field order"):
        loop_state(model, opt, sched, gen, order=field)
