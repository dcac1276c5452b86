"""Stage 7b, heldout: what the SFT model gives on the held-out set, for a task whose
evaluation compares the policy with it there (``task=custom``: the SFT log-prob of every
held-out response). Computed once per SFT model and held-out set and reused by every
evaluation of a sweep, where each run would otherwise recompute it; the SFT row itself
needs no pass at all (its log-ratio to itself is 0). A task without such values makes no
artifact (``Task.heldout_params`` is None)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.io import read_jsonl, save_arrays
from pipeline.modeling import models
from pipeline.modeling import precision as precisions

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# The batch size only groups the same forward passes (padding is masked out).
NOT_IN_KEY = ("scale.eval.batch_size",)


def params(cfg: DictConfig) -> dict | None:
    own = tasks.get(cfg).heldout_params(cfg)
    return None if own is None else {**own, **precisions.key(cfg)}


def identity(cfg: DictConfig, sft: Artifact, prompts: Artifact) -> tuple[dict, list] | None:
    found = params(cfg)
    return None if found is None else (found, [sft, prompts])


def run(cfg: DictConfig, cache: Cache, sft: Artifact, prompts: Artifact) -> Artifact | None:
    found = params(cfg)
    if found is None:
        return None
    task = tasks.get(cfg)

    def build(out: Path) -> dict:
        rows = read_jsonl(prompts / "eval_prompts.jsonl", required=("text",))
        model = models.load_model(sft / "model", cfg.device).eval()
        values = task.heldout_reference(cfg, model, sft / "model", rows)
        save_arrays(out / "heldout.npz", **values)
        sizes = ", ".join(f"{k} {np.asarray(v).size}" for k, v in values.items())
        print(f"[heldout] the SFT model on {len(rows)} held-out prompts: {sizes}")
        return {k: int(np.asarray(v).size) for k, v in values.items()}

    return cache.stage("heldout", found, [sft, prompts], build, version=VERSION)
