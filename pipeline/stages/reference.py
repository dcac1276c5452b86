"""Stage 7a, reference: log pi_SFT(response | prompt) for the responses of a sample set,
computed once and reused by every training run.

By default every response of the set, so every run on any subset of it (each seed, each
data size of a sweep) reuses one artifact: a sampled set is sized for its pairs. A task
whose responses come from a file much larger than the pairs a run takes
(``task=custom`` with 64 pairs out of a 2,250-response file) scores only the responses
those pairs use (``Task.reference_scope``: "pairs"); the others stay NaN, and the pairs
artifact becomes an input of the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline import tasks
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


def scoped(cfg: DictConfig) -> bool:
    """Whether only the responses of the run's pairs are scored (the task decides)."""
    return tasks.get(cfg).reference_scope(cfg) == "pairs"


def identity(
    cfg: DictConfig, sft: Artifact, samples: Artifact, pairs: Artifact
) -> tuple[dict, list[Artifact]]:
    # Scoring every response keeps the key it always had (the pairs are not an input).
    if scoped(cfg):
        return {**params(cfg), "responses": "pairs"}, [sft, samples, pairs]
    return params(cfg), [sft, samples]


def needed(pairs: dict, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (n_prompts, most responses): the responses the pairs name."""
    mask = np.zeros(shape, dtype=bool)
    for side in ("chosen", "rejected"):
        mask[pairs["prompt"], pairs[side]] = True
    return mask


def run(
    cfg: DictConfig, cache: Cache, sft: Artifact, samples: Artifact, pairs: Artifact
) -> Artifact:
    found, inputs = identity(cfg, sft, samples, pairs)
    only_pairs = scoped(cfg)  # the task decides once; read by the build and its summary

    def build(out: Path) -> dict:
        s = artifacts.samples(samples)
        used = artifacts.pairs(pairs) if only_pairs else None
        # Prompts may have different numbers of responses (task=custom): NaN pads the rest.
        sizes = [len(rs) for rs in s["responses"]]
        present = np.arange(max(sizes)) < np.array(sizes)[:, None]
        wanted = needed(used, present.shape) if used is not None else present
        rows, cols = np.nonzero(wanted & present)  # row-major: the old order when all
        prompts = [s["prompts"][i] for i in rows]
        responses = [s["responses"][i][k] for i, k in zip(rows, cols, strict=True)]
        tok = models.load_tokenizer(sft / "model")
        # float32 weights under autocast (bf16): the same computation as the policy's
        model = models.load_model(sft / "model", cfg.device).eval()
        logps = batched_logps(
            model, prompts, responses, tok.pad_token_id, cfg.scale.eval.batch_size,
            precisions.of(cfg),
        )  # fmt: skip
        table = np.full(present.shape, np.nan)
        table[rows, cols] = logps
        save_arrays(out / "reference_logps.npz", logps=table)
        of = (
            f" of {int(present.sum())} (those the {len(used['prompt'])} pairs use)"
            if used is not None
            else ""
        )
        print(f"[reference] {logps.size} responses{of}, mean log-prob {logps.mean():.2f}")
        return {"responses": int(logps.size)}

    return cache.stage("reference", found, inputs, build, version=VERSION)
