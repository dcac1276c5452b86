"""Resumable training loops: the whole loop state saved atomically every few steps.

A checkpoint lives in the cache beside the stage it belongs to
(``<cache>/<stage>/.ckpt-<key>/state.pt``, see ``Cache.checkpoint_dir``), so a run
killed mid-training and started again with the same config finds it and goes on
from the last saved step. It holds everything the loop's future depends on (model,
optimizer, scheduler, random generator, data position, logged rows), so a resumed
run ends bit-identical to an uninterrupted one on the same machine.

A checkpoint is loaded with ``torch.load(weights_only=True)``: unpickling an
arbitrary object can run any code, and the cache is a shared directory that anything
may have written into. So a loop state holds only tensors and plain Python data
(``loop_state`` refuses anything else when saving), and a file that holds more is
ignored like a torn one.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

from pipeline import chaos

STATE = "state.pt"


class Checkpointer:
    """Save/load one loop state; ``every`` = 0 turns checkpointing off."""

    def __init__(self, directory: Path, every: int, stage: str) -> None:
        self.directory = Path(directory)
        self.every = int(every or 0)
        self.stage = stage

    def load(self) -> dict[str, Any] | None:
        """The last saved state, or None (nothing saved, or a file that does not load:
        it is then ignored and the loop starts from scratch, never from a bad state)."""
        path = self.directory / STATE
        if not self.every or not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file: start over rather than trust it
            print(f"[{self.stage}] ignoring unreadable checkpoint {path}: {_reason(e)}")
            return None

    def due(self, step: int) -> bool:
        """After optimisation step ``step`` (0-based), is a checkpoint due?"""
        return bool(self.every) and (step + 1) % self.every == 0

    def save(self, state: dict[str, Any], step: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{STATE}.{uuid.uuid4().hex[:8]}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.directory / STATE)
        chaos.point(f"{self.stage}:step:{step}")


def loop_state(
    model: torch.nn.Module, opt: Any, sched: Any, gen: torch.Generator, **position: Any
) -> dict[str, Any]:
    """What a training loop's future depends on; ``position`` says where it is
    (tensors and plain Python data only, so that it loads with ``weights_only``)."""
    for name, value in position.items():
        _check_plain(value, name)
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": {"generator": gen.get_state(), "torch": torch.get_rng_state()},
        **position,
    }


def restore_loop(
    saved: dict[str, Any], model: torch.nn.Module, opt: Any, sched: Any, gen: torch.Generator
) -> None:
    """Put model, optimizer, scheduler and random state back as ``loop_state`` saved them."""
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    gen.set_state(saved["rng"]["generator"])
    torch.set_rng_state(saved["rng"]["torch"])


# Exact types: a subclass such as numpy.float64 (a float) pickles as a numpy object.
PLAIN = (bool, int, float, str, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Raise if ``value`` holds anything but tensors and plain data: such a state would
    save fine and then never load, so every resume would silently start over."""
    if type(value) is dict:
        for k, v in value.items():
            _check_plain(k, f"{where} key")
            _check_plain(v, f"{where}[{k!r}]")
    elif type(value) in (list, tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif type(value) not in PLAIN and not isinstance(value, torch.Tensor):
        raise TypeError(
            f"checkpoint field {where} is a {type(value).__module__}.{type(value).__name__}; "
            "save tensors and plain Python data only (they load with weights_only=True)"
        )


def _reason(error: Exception) -> str:
    """The gist of a load error; torch's own refusal is a page that ends in advice to
    load with weights_only=False, which is exactly what must not be done here."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].strip().split(". ")[0]
        return f"it holds more than tensors and plain data ({detail})"
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
