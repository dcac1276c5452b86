"""Stage 3, classifier: the reward model, with its held-out accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline import scorers
from pipeline.cache import Artifact, Cache
from pipeline.errors import DataError
from pipeline.io import read_jsonl

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# Config keys this stage reads that do not change the classifier.
NOT_IN_KEY = ("scorer.min_accuracy",)


def params(cfg: DictConfig) -> dict:
    params = OmegaConf.to_container(cfg.scorer, resolve=True)
    params.pop("min_accuracy")  # a bar to check, not something that changes the classifier
    return params


def run(cfg: DictConfig, cache: Cache, data: Artifact) -> Artifact:

    def build(out: Path) -> dict:
        train = read_jsonl(data / "train.jsonl", required=("text", "label"))
        test = [
            r
            for r in read_jsonl(data / "test.jsonl", required=("text", "label"))
            if r["label"] is not None
        ]
        if not test:
            raise DataError(
                f"{data / 'test.jsonl'}: no labelled held-out rows to measure the classifier on"
            )
        scorers.prepare(cfg.scorer, train, out)
        scorer = scorers.load(cfg.scorer, out, cfg.device)
        # A random subset: hub splits can be sorted by label (IMDB's test split is).
        rng = np.random.default_rng(cfg.data.split_seed)
        test = [test[i] for i in rng.permutation(len(test))[: cfg.scorer.max_eval_rows]]
        predicted = scorer.p_positive([r["text"] for r in test]) >= 0.5
        accuracy = float(np.mean(predicted == np.array([r["label"] == 1 for r in test])))
        print(
            f"[classifier] {cfg.scorer.name}: held-out accuracy {accuracy:.3f} on {len(test)} texts"
        )
        return {"accuracy": accuracy, "n_eval": len(test)}

    artifact = cache.stage("classifier", params(cfg), [data], build, version=VERSION)
    if artifact.info["accuracy"] < cfg.scorer.min_accuracy:
        raise DataError(
            f"classifier held-out accuracy {artifact.info['accuracy']:.3f} is below "
            f"scorer.min_accuracy={cfg.scorer.min_accuracy}"
        )
    return artifact
