"""Stage 1b, prompts: which training texts seed the sample sets and which held-out
texts seed evaluation. Kept apart from the data splits so that changing a prompt
count never retrains the SFT model or the classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline.cache import Artifact, Cache
from pipeline.errors import DataError
from pipeline.io import read_jsonl, write_jsonl


def run(cfg: DictConfig, cache: Cache, data: Artifact) -> Artifact:
    n_sample, n_eval = cfg.scale.sample.n_prompts, cfg.scale.eval.n_prompts
    params = {
        "n_sample_prompts": n_sample,
        "n_eval_prompts": n_eval,
        "split_seed": cfg.data.split_seed,
    }

    def build(out: Path) -> dict:
        train = read_jsonl(data / "train.jsonl", required=("text",))
        test = read_jsonl(data / "test.jsonl", required=("text",))
        if n_sample > len(train):
            raise DataError(
                f"scale.sample.n_prompts={n_sample} but the training split has {len(train)} texts"
            )
        if n_eval > len(test):
            raise DataError(
                f"scale.eval.n_prompts={n_eval} but the held-out split has {len(test)} texts"
            )
        rng = np.random.default_rng(cfg.data.split_seed)
        write_jsonl(
            out / "sample_prompts.jsonl",
            [train[i] for i in rng.choice(len(train), n_sample, replace=False)],
        )
        write_jsonl(
            out / "eval_prompts.jsonl",
            [test[i] for i in rng.choice(len(test), n_eval, replace=False)],
        )
        return {"n_sample_prompts": n_sample, "n_eval_prompts": n_eval}

    return cache.stage("prompts", params, [data], build)
