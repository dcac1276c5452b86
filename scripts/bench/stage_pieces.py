"""The other stages' passes, measured for the memory section (``child.py`` runs them):
the reference stage's pass over a sample set, a few steps of the SFT loop and the
evaluation's KL pass, on a synthetic model and data. Each returns a plain JSON-able dict.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from omegaconf import OmegaConf

from scripts.bench import synthetic as syn
from scripts.bench.synthetic import PAD, DataSpec, ModelSpec


def reference_pass(spec: dict, data: dict, scale: str, seed: int = 0) -> dict:
    """The reference stage's pass over a whole sample set (every response once)."""
    mspec, dspec = ModelSpec(**spec), DataSpec(**data)
    cfg = syn.compose_cfg(scale)
    samples = syn.make_samples(mspec, dspec, seed)
    model = syn.build_model(mspec, seed).eval()
    from pipeline.modeling.inference import batched_logps

    prompts = [
        pr for pr, rs in zip(samples["prompts"], samples["responses"], strict=True) for _ in rs
    ]
    responses = [r for rs in samples["responses"] for r in rs]
    start = time.perf_counter()
    batched_logps(model, prompts, responses, PAD, int(cfg.scale.eval.batch_size))
    return {"responses": len(responses), "seconds": time.perf_counter() - start}


def sft_steps(spec: dict, scale: str, steps: int, seed: int = 0) -> dict:
    """A few steps of the SFT stage's loop (``sft.train_lm``) on random texts of the
    scale's SFT length: its memory, not its result."""
    from pipeline.stages.sft import train_lm

    mspec = ModelSpec(**spec)
    cfg = syn.compose_cfg(scale)
    sft_cfg = OmegaConf.merge(cfg.scale.sft, {"steps": steps, "warmup_steps": 0})
    rng = np.random.default_rng(seed)
    length = int(cfg.scale.sft.max_length)
    seqs = [rng.integers(1, mspec.vocab_size, length).tolist() for _ in range(1024)]
    model = syn.build_model(mspec, seed)
    start = time.perf_counter()
    train_lm(model, seqs, sft_cfg, PAD, torch.Generator().manual_seed(seed), "cpu")
    return {"steps": steps, "seconds": time.perf_counter() - start}


def evaluate_kl(spec: dict, data: dict, scale: str, seed: int = 0) -> dict:
    """The evaluation stage's KL pass (policy and SFT model over held-out samples)."""
    from pipeline.stages.evaluate import kl_to_reference

    mspec, dspec = ModelSpec(**spec), DataSpec(**data)
    cfg = syn.compose_cfg(scale)
    samples = syn.make_samples(mspec, dspec, seed)
    prompts = list(samples["prompts"])
    responses = [rs[0] for rs in samples["responses"]]
    policy, reference = syn.build_model(mspec, seed).eval(), syn.build_model(mspec, seed + 1).eval()
    start = time.perf_counter()
    kl_to_reference(policy, reference, prompts, responses, PAD, int(cfg.scale.eval.batch_size))
    return {"responses": len(responses), "seconds": time.perf_counter() - start}
