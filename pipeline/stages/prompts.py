"""Stage 1b, prompts: the sampling and evaluation prompt sets (disjoint; the evaluation
prompts are never seen by SFT), chosen by the task from the data splits. Kept apart from
the data splits so that changing a prompt count never retrains the SFT model or classifier."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.io import read_jsonl, write_jsonl

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 2


def params(cfg: DictConfig) -> dict:
    return {
        "n_sample_prompts": cfg.scale.sample.n_prompts,
        "n_eval_prompts": cfg.scale.eval.n_prompts,
        "split_seed": cfg.data.split_seed,
    }


def run(cfg: DictConfig, cache: Cache, data: Artifact) -> Artifact:
    def build(out: Path) -> dict:
        train = read_jsonl(data / "train.jsonl", required=("text",))
        heldout = read_jsonl(data / "test.jsonl", required=("text",))
        sampling, evaluation = tasks.get(cfg).prompt_sets(cfg, train, heldout)
        write_jsonl(out / "sample_prompts.jsonl", sampling)
        write_jsonl(out / "eval_prompts.jsonl", evaluation)
        print(
            f"[prompts] {len(sampling)} sampling and {len(evaluation)} evaluation prompts "
            f"({len(train)} training and {len(heldout)} held-out rows)"
        )
        return {"n_sample_prompts": len(sampling), "n_eval_prompts": len(evaluation)}

    return cache.stage("prompts", params(cfg), [data], build, version=VERSION)
