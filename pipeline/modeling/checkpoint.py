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
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from pipeline.infra import faults
from pipeline.modeling import lora

STATE = "state.pt"


class Checkpointer:
    """Save/load one loop state every ``every`` steps and/or every ``seconds`` of wall
    clock (whichever comes first); both 0 turns checkpointing off. A wall-clock
    interval bounds the overhead whatever a step costs: a GPT-2 Large save (model and
    optimizer, ~9 GB) takes 7-14 s, so one per 10 minutes costs at most ~2%."""

    def __init__(self, directory: Path, every: int, stage: str, seconds: float = 0) -> None:
        self.directory = Path(directory)
        self.every = int(every or 0)
        self.seconds = float(seconds or 0)
        self.stage = stage
        self._last = time.monotonic()
        self.save_seconds = 0.0  # time spent saving so far (the overhead the bench reports)

    def load(self) -> dict[str, Any] | None:
        """The last saved state, or None (nothing saved, or a file that does not load:
        it is then ignored and the loop starts from scratch, never from a bad state)."""
        path = self.directory / STATE
        if not (self.every or self.seconds) or not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file: start over rather than trust it
            print(f"[{self.stage}] ignoring unreadable checkpoint {path}: {_reason(e)}")
            return None

    def due(self, step: int) -> bool:
        """After optimisation step ``step`` (0-based), is a checkpoint due?"""
        by_steps = bool(self.every) and (step + 1) % self.every == 0
        by_clock = bool(self.seconds) and time.monotonic() - self._last >= self.seconds
        return by_steps or by_clock

    def save(self, state: dict[str, Any], step: int) -> None:
        began = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{STATE}.{uuid.uuid4().hex[:8]}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.directory / STATE)
        self._last = time.monotonic()
        self.save_seconds += self._last - began
        faults.point(f"{self.stage}:step:{step}")


class PrefixStore:
    """Training states shared between runs whose pairs are prefixes of one another.

    A sweep over training-set sizes subsamples pairs as a prefix of one seeded order
    (``pairs.subsample``) and trains epoch 0 in that order with a schedule that does not
    depend on the run's length (constant after warm-up). So a 7,500-pair run's first
    156 batches are exactly a 5,000-pair run's first 156: the shorter run saves its loop
    state after its last full batch of epoch 0, and the longer one resumes from it (the
    same exact restore as a checkpoint, so the result is bit for bit the same as training
    from scratch; ``tests/test_performance.py`` holds it). ``directory`` is one per
    family: every setting and input of the train key but the pairs' count. A state is
    used only if the pairs it consumed equal this run's first pairs. Files, not folders,
    ``<directory>/<family>-<pairs consumed>.pt``: a folder in the cache is a published
    stage output, with its manifest."""

    def __init__(self, directory: Path, family: str) -> None:
        self.directory = Path(directory)
        self.family = family

    def _path(self, consumed: int) -> Path:
        return self.directory / f"{self.family}-{consumed}.pt"

    def save(self, state: dict[str, Any], consumed: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{self.family}-{consumed}.{uuid.uuid4().hex[:8]}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self._path(consumed))

    def best(self, pairs: torch.Tensor, batch_size: int) -> dict[str, Any] | None:
        """The longest saved state whose consumed pairs are a proper prefix of ``pairs``
        (rows of prompt, chosen, rejected and both scores) at a batch boundary."""
        if not self.directory.is_dir():
            return None
        counts = (f.stem.rpartition("-")[2] for f in self.directory.glob(f"{self.family}-*.pt"))
        sizes = sorted((int(c) for c in counts if c.isdigit()), reverse=True)
        for consumed in sizes:
            if consumed >= len(pairs) or consumed % batch_size:
                continue
            try:
                state = torch.load(self._path(consumed), weights_only=True)
            except Exception:  # a torn or foreign file: train those batches instead
                continue
            if torch.equal(state.get("pairs", torch.empty(0)), pairs[:consumed]):
                return state
        return None


def loop_state(
    model: torch.nn.Module, opt: Any, sched: Any, gen: torch.Generator, **position: Any
) -> dict[str, Any]:
    """What a training loop's future depends on; ``position`` says where it is
    (tensors and plain Python data only, so that it loads with ``weights_only``)."""
    for name, value in position.items():
        _check_plain(value, name)
    optimizer = opt.state_dict()
    for group in optimizer["param_groups"]:  # copies: the optimizer keeps its own
        for name in ("lr", "initial_lr"):
            # A compiled step's tensor learning rate (optim.compiled_step) is saved as the
            # float an uncompiled resume expects; a compiled one makes it a tensor again.
            if isinstance(group.get(name), torch.Tensor):
                group[name] = float(group[name])
    return {
        "model": trained_state(model),
        "optimizer": optimizer,
        "scheduler": sched.state_dict(),
        "rng": {"generator": gen.get_state(), "torch": torch.get_rng_state()},
        **position,
    }


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state a resume needs: all of it, or under LoRA the adapters alone (the
    frozen base is the SFT model, on disk already: 538 MB a checkpoint for SmolLM2)."""
    state = model.state_dict()
    if not isinstance(model, torch.nn.Module):  # FSDP's gathered state, already plain
        return state
    names = lora.trainable_names(model)
    return state if names is None else {k: v for k, v in state.items() if k in names}


def load_trained_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    names = lora.trainable_names(model)
    if names is None:
        model.load_state_dict(state)
        return
    missing = names - set(state)
    if missing:
        raise RuntimeError(f"the checkpoint lacks {len(missing)} trained tensors")
    model.load_state_dict(state, strict=False)


def restore_loop(
    saved: dict[str, Any], model: torch.nn.Module, opt: Any, sched: Any, gen: torch.Generator
) -> None:
    """Put model, optimizer, scheduler and random state back as ``loop_state`` saved them."""
    load_trained_state(model, saved["model"])
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
