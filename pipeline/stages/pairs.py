"""Stage 6, pairs: all pairs with different scores, then a seeded subsample of n_pairs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.errors import ConfigError
from pipeline.infra.io import save_arrays
from pipeline.math import pairing as pairs_lib
from pipeline.stages import artifacts

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1


def params(cfg: DictConfig) -> dict:
    # The pairs a run will use: task=custom caps n_pairs at what the file gives, so two
    # sizes above that are one computation and one row.
    return {"n_pairs": tasks.get(cfg).pairs_used(cfg), "seed": cfg.seed}


def run(cfg: DictConfig, cache: Cache, scores: Artifact) -> Artifact:
    def build(out: Path) -> dict:
        s = artifacts.scores(scores)["score"]
        every = pairs_lib.all_pairs(s)
        if not len(every):
            raise ConfigError(
                "the sample set has no pairs with different scores: every response of a "
                "prompt scored the same (nothing to prefer)"
            )
        n_pairs = tasks.get(cfg).pairs_used(cfg)
        if n_pairs < cfg.n_pairs:
            print(f"[pairs] n_pairs={cfg.n_pairs} asked; the data gives {n_pairs}, all used")
        if n_pairs > len(every):
            raise ConfigError(
                f"n_pairs={cfg.n_pairs} but the sample set has only {len(every)} pairs with different scores "
                f"(raise scale.sample.n_prompts or scale.sample.n_samples)"
            )
        chosen = pairs_lib.subsample(every, n_pairs, cfg.seed)
        prompt, win, lose = chosen[:, 0], chosen[:, 1], chosen[:, 2]
        save_arrays(
            out / "pairs.npz",
            prompt=prompt,
            chosen=win,
            rejected=lose,
            score_chosen=s[prompt, win],
            score_rejected=s[prompt, lose],
        )
        print(f"[pairs] {len(every)} pairs available, kept {n_pairs} (seed {cfg.seed})")
        return {"n_available": len(every), "n_pairs": n_pairs}

    return cache.stage("pairs", params(cfg), [scores], build, version=VERSION)
