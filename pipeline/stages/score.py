"""Stage 5, score: the scorer's probability of every sample and the paper's training
score r = 1 + p(good) if the scorer calls the sample good, else 1 - p(bad) (range [0, 2];
the task says which label is good). A task that brings its own scores (``task=custom``)
uses those as training scores instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.errors import DataError
from pipeline.infra.io import read_jsonl, save_arrays
from pipeline.math.rewards import training_score
from pipeline.scoring import scorers
from pipeline.stages import artifacts

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1


def params(cfg: DictConfig) -> dict:
    """Nothing beyond its inputs (samples, classifier) for sentiment; which label is good
    when the task's is the scorer's other label."""
    task = tasks.get(cfg)
    return {**task.key_extras("score"), **task.key_settings(cfg, "score")}


def identity(
    cfg: DictConfig, samples: Artifact, classifier: Artifact | None, prompts: Artifact
) -> tuple[dict, list[Artifact]]:
    """What names the scores: the task's own scores are keyed by the samples they come
    with; a task that rates its samples by the samples and prompts; else the samples and
    the classifier that scores them."""
    if tasks.get(cfg).given_samples_params(cfg) is not None:
        return {"given": True}, [samples]
    if classifier is None:  # the task rates its samples itself (task=summarize)
        return params(cfg), [samples, prompts]
    return params(cfg), [samples, classifier]


def run(
    cfg: DictConfig, cache: Cache, samples: Artifact, classifier: Artifact, prompts: Artifact
) -> Artifact:
    task = tasks.get(cfg)
    params_, key_inputs = identity(cfg, samples, classifier, prompts)
    if params_ == {"given": True}:
        return run_given(cfg, cache, samples, prompts)
    if classifier is None:
        return run_rated(cfg, cache, samples, prompts)

    def build(out: Path) -> dict:
        texts = artifacts.samples(samples)["texts"]
        n_prompts, n_samples = len(texts), len(texts[0])
        scorer = scorers.load(cfg.scorer, classifier.path, cfg.device)
        flat = [t for row in texts for t in row]
        p = scorers.checked_probabilities(scorer.prob(flat), "score").reshape(n_prompts, n_samples)
        # Saved as p_positive: the scorer's probability (of toxic, for toxicity).
        save_arrays(
            out / "scores.npz", p_positive=p, score=training_score(task.good_probability(p))
        )
        print(f"[score] {p.size} samples, mean scorer probability {p.mean():.3f}")
        return {"mean_p_positive": float(p.mean())}

    return cache.stage("score", params(cfg), [samples, classifier], build, version=VERSION)


def run_given(cfg: DictConfig, cache: Cache, samples: Artifact, prompts: Artifact) -> Artifact:
    """The task's own scores as the training scores (no classifier)."""

    def build(out: Path) -> dict:
        rows = read_jsonl(prompts / "sample_prompts.jsonl")
        given = tasks.get(cfg).given_scores(rows, artifacts.samples(samples))
        save_arrays(out / "scores.npz", score=given)
        print(f"[score] {np.isfinite(given).sum()} scores given, mean {np.nanmean(given):.3f}")
        return {"mean_score": float(np.nanmean(given))}

    return cache.stage("score", {"given": True}, [samples], build, version=VERSION)


def run_rated(cfg: DictConfig, cache: Cache, samples: Artifact, prompts: Artifact) -> Artifact:
    """The task's own rating of each sample as the training score (no classifier)."""
    task = tasks.get(cfg)

    def build(out: Path) -> dict:
        rows = read_jsonl(prompts / "sample_prompts.jsonl")
        scores = task.rate_samples(cfg, rows, artifacts.samples(samples)["texts"], prompts.path)
        if scores is None:
            raise DataError(f"task={task.name} names no scorer and rates no samples")
        save_arrays(out / "scores.npz", score=scores)
        values, counts = np.unique(scores[np.isfinite(scores)], return_counts=True)
        spread = ", ".join(f"{v:g}: {c}" for v, c in zip(values, counts, strict=True))
        print(f"[score] {scores.size} samples rated, mean {np.nanmean(scores):.3f} ({spread})")
        return {"mean_score": float(np.nanmean(scores))}

    return cache.stage("score", params(cfg), [samples, prompts], build, version=VERSION)
