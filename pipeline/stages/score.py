"""Stage 5, score: classifier p(positive) of every sample and the training score
r = 1 + p(positive) if positive else 1 - p(negative).

A samples file with its own scores skips the classifier: those scores are the
training scores, and the stage is keyed by the file instead of the classifier."""

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
            f"[{stage}] scorer returned {float(p.reshape(-1)[row])!r} for row {row}: not a probability"
        )
    return p


def params(samples_info: dict) -> dict:
    """Nothing for sampled responses (the classifier and samples are its inputs); a
    samples file's digest, and whether it brings its own scores, when there is one."""
    digest = samples_info.get("samples_file_sha256")
    if samples_info.get("given_scores"):
        return {"given_scores": True, "samples_file_sha256": digest}
    return {} if digest is None else {"samples_file_sha256": digest}


def run(cfg: DictConfig, cache: Cache, samples: Artifact, classifier: Artifact) -> Artifact:
    if samples.info.get("given_scores"):
        return run_given(cache, samples)

    def build(out: Path) -> dict:
        texts = sample.load(samples)["texts"]
        n_prompts, n_samples = len(texts), len(texts[0])
        scorer = scorers.load(cfg.scorer, classifier.path, cfg.device)
        flat = [t for row in texts for t in row]
        p = checked_probabilities(scorer.p_positive(flat), "score").reshape(n_prompts, n_samples)
        save_arrays(out / "scores.npz", p_positive=p, score=training_score(p))
        print(f"[score] {p.size} samples, mean p(positive) {p.mean():.3f}")
        return {"mean_p_positive": float(p.mean())}

    return cache.stage("score", params(samples.info), [samples, classifier], build, version=VERSION)


def run_given(cache: Cache, samples: Artifact) -> Artifact:
    """The samples file's own scores as the training scores (no classifier)."""

    def build(out: Path) -> dict:
        given = np.asarray(sample.load_given_scores(samples), dtype=np.float64)
        save_arrays(out / "scores.npz", score=given)
        print(f"[score] {given.size} scores given in samples_file, mean {given.mean():.3f}")
        return {"mean_score": float(given.mean())}

    return cache.stage("score", params(samples.info), [samples], build, version=VERSION)


def load(artifact: Artifact) -> dict[str, np.ndarray]:
    return load_arrays(artifact / "scores.npz")
