"""The training stage's optimizers: which exist, how each is built for speed, and the
compiled update step (``scale.train.compile``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

OPTIMIZERS = {"adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float
) -> torch.optim.Optimizer:
    """AdamW fused into one kernel per parameter (CPU and CUDA), RMSprop over lists
    of tensors (``foreach``): the same update as the one-tensor-at-a-time loop."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, fused=True)
    return OPTIMIZERS[name](params, lr=lr, foreach=True)


def compiled_step(opt: torch.optim.Optimizer) -> Callable[[], object]:
    """``opt.step`` compiled into a few fused kernels. torch has no fused RMSprop: its
    ``foreach`` update makes about five passes over every parameter's memory, 10% of a
    bf16 GPT-2 Large step on an H200; compiled, it is 5.0x faster on this CPU for 30M
    parameters (``make bench``, the optimizer section). The learning rate becomes a
    tensor that the scheduler fills in place: as a float, each warm-up step's new value
    would recompile the step. Call again after loading an optimizer state. A fused
    optimizer (AdamW) is one kernel per parameter already and is left as it is."""
    if opt.defaults.get("fused"):
        return opt.step
    for group in opt.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]))
    return torch.compile(opt.step)
