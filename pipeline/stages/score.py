"""Stage 5, score: classifier p(positive) of every sample and the training score
r = 1 + p(positive) if positive else 1 - p(negative)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline import scorers
from pipeline.cache import Artifact, Cache
from pipeline.errors import DataError
from pipeline.io import load_arrays, save_arrays
from pipeline.rewards import first_non_probability, training_score
from pipeline.stages import sample

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1


def checked_probabilities(p: np.ndarray, stage: str) -> np.ndarray:
    """A scorer's output, refused with the stage and row if any value is not a probability."""
    p = np.asarray(p, dtype=np.float64)
    row = first_non_probability(p)
    if row is not None:
        raise DataError(
            f"[{stage}] scorer returned {p.reshape(-1)[row]!r} for row {row}: not a probability"
        )
    return p


def run(cfg: DictConfig, cache: Cache, samples: Artifact, classifier: Artifact) -> Artifact:
    def build(out: Path) -> dict:
        texts = sample.load(samples)["texts"]
        n_prompts, n_samples = len(texts), len(texts[0])
        scorer = scorers.load(cfg.scorer, classifier.path, cfg.device)
        flat = [t for row in texts for t in row]
        p = checked_probabilities(scorer.p_positive(flat), "score").reshape(n_prompts, n_samples)
        save_arrays(out / "scores.npz", p_positive=p, score=training_score(p))
        print(f"[score] {p.size} samples, mean p(positive) {p.mean():.3f}")
        return {"mean_p_positive": float(p.mean())}

    return cache.stage("score", {}, [samples, classifier], build, version=VERSION)


def load(artifact: Artifact) -> dict[str, np.ndarray]:
    return load_arrays(artifact / "scores.npz")
