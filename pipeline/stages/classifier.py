"""Stage 3, classifier: the scorer, trained or recorded, with its accuracy on the labelled
held-out rows (label 1 = the label whose probability the scorer gives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.errors import DataError
from pipeline.infra.io import read_jsonl
from pipeline.scoring import scorers

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# Config keys this stage reads that do not change the classifier.
NOT_IN_KEY = ("scorer.min_accuracy", "data.download_dir")


def params(cfg: DictConfig) -> dict:
    return scorers.params(cfg.scorer)


def identity(cfg: DictConfig, data: Artifact) -> tuple[dict, list[Artifact]] | None:
    """None when the task names no scorer: then there is no classifier."""
    return (params(cfg), [data]) if cfg.scorer.name else None


def run(cfg: DictConfig, cache: Cache, data: Artifact) -> Artifact | None:
    """The scorer's artifact; None when the task names no scorer (task=custom may not)."""
    if not cfg.scorer.name:
        return None
    labelled = tasks.get(cfg).labelled

    def build(out: Path) -> dict:
        train = read_jsonl(data / "train.jsonl", required=("text", "label"))
        test = [
            r
            for r in read_jsonl(data / "test.jsonl", required=("text", "label"))
            if r["label"] is not None
        ]
        if not test and not labelled:
            scorers.prepare(cfg.scorer, train, out, cfg.data.download_dir)
            print(f"[classifier] {cfg.scorer.name}: no labelled rows, accuracy not measured")
            return {"accuracy": None, "n_eval": 0}
        if not test:
            raise DataError(
                f"{data / 'test.jsonl'}: no labelled held-out rows to measure the classifier on"
            )
        scorers.prepare(cfg.scorer, train, out, cfg.data.download_dir)
        scorer = scorers.load(cfg.scorer, out, cfg.device)
        # A random subset: hub splits can be sorted by label (IMDB's test split is).
        rng = np.random.default_rng(cfg.data.split_seed)
        test = [test[i] for i in rng.permutation(len(test))[: cfg.scorer.max_eval_rows]]
        predicted = scorer.prob([r["text"] for r in test]) >= 0.5
        accuracy = float(np.mean(predicted == np.array([r["label"] == 1 for r in test])))
        print(
            f"[classifier] {cfg.scorer.name}: held-out accuracy {accuracy:.3f} on {len(test)} texts"
        )
        return {"accuracy": accuracy, "n_eval": len(test)}

    artifact = cache.stage("classifier", params(cfg), [data], build, version=VERSION)
    accuracy = artifact.info["accuracy"]
    if accuracy is not None and accuracy < cfg.scorer.min_accuracy:
        raise DataError(
            f"classifier held-out accuracy {artifact.info['accuracy']:.3f} is below "
            f"scorer.min_accuracy={cfg.scorer.min_accuracy}"
        )
    return artifact
