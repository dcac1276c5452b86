"""Stage 7a, reference: log pi_SFT(response | prompt) for every response of a
sample set, computed once and reused by every training run on any subset of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.io import save_arrays
from pipeline.modeling import models
from pipeline.modeling import precision as precisions
from pipeline.modeling.inference import batched_logps
from pipeline.stages import artifacts

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# Config keys this stage reads that do not change its output: the batch size only
# groups the same forward passes (padding is masked out).
NOT_IN_KEY = ("scale.eval.batch_size",)


def params(cfg: DictConfig) -> dict:
    """Nothing beyond its inputs and the precision: the SFT model and the sample set
    decide every log-prob. Under bf16 the weights stay float32 under autocast, as the
    policy's in training (earlier bf16 references loaded bfloat16 weights: a new key)."""
    extra = {"weights": "float32"} if precisions.of(cfg) == "bf16" else {}
    return {**precisions.key(cfg), **extra}


def run(cfg: DictConfig, cache: Cache, sft: Artifact, samples: Artifact) -> Artifact:
    def build(out: Path) -> dict:
        s = artifacts.samples(samples)
        # Prompts may have different numbers of responses (task=custom): NaN pads the rest.
        sizes = [len(rs) for rs in s["responses"]]
        prompts = [p for p, n in zip(s["prompts"], sizes, strict=True) for _ in range(n)]
        responses = [r for rs in s["responses"] for r in rs]
        tok = models.load_tokenizer(sft / "model")
        # float32 weights under autocast (bf16): the same computation as the policy's
        model = models.load_model(sft / "model", cfg.device).eval()
        logps = batched_logps(
            model, prompts, responses, tok.pad_token_id, cfg.scale.eval.batch_size,
            precisions.of(cfg),
        )  # fmt: skip
        table = np.full((len(sizes), max(sizes)), np.nan)
        table[np.arange(max(sizes)) < np.array(sizes)[:, None]] = logps
        save_arrays(out / "reference_logps.npz", logps=table)
        print(f"[reference] {logps.size} responses, mean log-prob {logps.mean():.2f}")
        return {}

    return cache.stage("reference", params(cfg), [sft, samples], build, version=VERSION)
