"""The optimizer update on its own: the pipeline's RMSprop (``foreach``, the paper's
optimizer) eager and compiled (``optim.compiled_step``, what ``scale.train.compile`` adds),
and its fused AdamW (the embedded default), on one model's parameters with random
gradients. The update is a pass over memory per parameter, the same work whatever the
batch, so its time is the cost it adds to every training step. Both RMSprop variants go
through a warm-up (the learning rate changes at every step, as in training), and the
weights they reach are compared."""

from __future__ import annotations

import time

import torch
from transformers import get_constant_schedule_with_warmup

from pipeline.modeling.optim import compiled_step, make_optimizer
from scripts.bench import synthetic as syn
from scripts.bench.ours import median
from scripts.bench.synthetic import ModelSpec

LR, WARMUP = 1e-4, 3


def _updates(spec: ModelSpec, name: str, compiled: bool, steps: int) -> tuple[dict, list]:
    """``steps`` updates of a fresh copy of the model: (timings, the final weights)."""
    model = syn.build_model(spec, seed=0)
    params = list(model.parameters())
    opt = make_optimizer(name, params, LR)
    sched = get_constant_schedule_with_warmup(opt, WARMUP)
    step = compiled_step(opt) if compiled else opt.step
    gen = torch.Generator().manual_seed(1)
    times = []
    for _ in range(steps):
        for p in params:  # the same gradients for every variant (the same seed)
            p.grad = torch.randn(p.shape, generator=gen)
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        sched.step()
    return (
        {
            "optimizer": name,
            "compiled": compiled,
            "first_step_s": times[0],  # includes the compilation
            "step_ms": [t * 1000 for t in times[1:]],
            "step_ms_median": median(times[1:]) * 1000,
            "parameters": sum(p.numel() for p in params),
            "tensors": len(params),
        },
        [p.detach() for p in params],
    )


def update(spec: dict, steps: int) -> dict:
    """Median time of one update per variant (after the first, which compiles), and how
    far the compiled RMSprop's weights are from the eager ones after ``steps`` updates."""
    mspec = ModelSpec(**spec)
    eager, eager_w = _updates(mspec, "rmsprop", False, steps)
    comp, comp_w = _updates(mspec, "rmsprop", True, steps)
    fused, _ = _updates(mspec, "adamw", False, steps)
    start = [p.detach() for p in syn.build_model(mspec, seed=0).parameters()]
    return {
        "variants": [eager, comp, fused],
        "max_abs_difference": max(
            (a - b).abs().max().item() for a, b in zip(eager_w, comp_w, strict=True)
        ),
        "max_abs_move": max(
            (a - b).abs().max().item() for a, b in zip(eager_w, start, strict=True)
        ),
        "compiled_speedup": eager["step_ms_median"] / comp["step_ms_median"],
    }
