"""Stage 1b, prompts: held-out texts whose first tokens seed the sample sets and
the evaluation (two disjoint sets, neither seen by SFT). Kept apart from the data
splits so that changing a prompt count never retrains the SFT model or classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline.cache import Artifact, Cache
from pipeline.errors import DataError
from pipeline.io import read_jsonl, write_jsonl

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 2


def params(cfg: DictConfig) -> dict:
    return {
        "n_sample_prompts": cfg.scale.sample.n_prompts,
        "n_eval_prompts": cfg.scale.eval.n_prompts,
        "split_seed": cfg.data.split_seed,
    }


def run(cfg: DictConfig, cache: Cache, data: Artifact) -> Artifact:
    n_sample, n_eval = cfg.scale.sample.n_prompts, cfg.scale.eval.n_prompts

    def build(out: Path) -> dict:
        test = read_jsonl(data / "test.jsonl", required=("text",))
        if n_sample + n_eval > len(test):
            raise DataError(
                f"scale.sample.n_prompts={n_sample} + scale.eval.n_prompts={n_eval} prompts are needed "
                f"but the held-out split has {len(test)} texts (raise data.heldout_fraction)"
            )
        chosen = np.random.default_rng(cfg.data.split_seed).choice(
            len(test), n_sample + n_eval, replace=False
        )
        write_jsonl(out / "sample_prompts.jsonl", [test[i] for i in chosen[:n_sample]])
        write_jsonl(out / "eval_prompts.jsonl", [test[i] for i in chosen[n_sample:]])
        print(
            f"[prompts] {n_sample} sampling and {n_eval} evaluation prompts from {len(test)} held-out texts"
        )
        return {"n_sample_prompts": n_sample, "n_eval_prompts": n_eval}

    return cache.stage("prompts", params(cfg), [data], build, version=VERSION)
