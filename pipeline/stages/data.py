"""Stage 1, data: review text for SFT, labelled reviews for the classifier, and
held-out review texts whose first tokens become prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline import sources
from pipeline.cache import Artifact, Cache
from pipeline.errors import DataError
from pipeline.io import write_jsonl


def load_rows(data_cfg: DictConfig, download_dir: Path) -> tuple[list[dict], list[dict]]:
    """(train_rows, test_rows) for the configured source."""
    src = data_cfg.source
    if src == "hub":
        return (
            sources.hub_dataset(
                data_cfg.name, data_cfg.train_split, data_cfg.text_field, data_cfg.label_field
            ),
            sources.hub_dataset(
                data_cfg.name, data_cfg.test_split, data_cfg.text_field, data_cfg.label_field
            ),
        )
    if src == "rotten_tomatoes":
        rows = sources.rotten_tomatoes(download_dir)
    elif src == "local":
        rows = sources.local_files(data_cfg.path, data_cfg.text_field, data_cfg.label_field)
    else:
        raise DataError(f"data.source: unknown source {src!r} (hub, local, rotten_tomatoes)")
    # A fixed split, independent of the run seed, so every run shares it.
    order = np.random.default_rng(data_cfg.split_seed).permutation(len(rows))
    n_test = int(round(len(rows) * data_cfg.heldout_fraction))
    return [rows[i] for i in order[n_test:]], [rows[i] for i in order[:n_test]]


def run(cfg: DictConfig, cache: Cache) -> Artifact:
    params = OmegaConf.to_container(cfg.data, resolve=True)
    params.pop("download_dir", None)
    params.update(
        n_sample_prompts=cfg.scale.sample.n_prompts, n_eval_prompts=cfg.scale.eval.n_prompts
    )

    def build(out: Path) -> dict:
        train, test = load_rows(cfg.data, Path(cfg.data.download_dir))
        n_sample, n_eval = cfg.scale.sample.n_prompts, cfg.scale.eval.n_prompts
        if n_sample > len(train):
            raise DataError(
                f"scale.sample.n_prompts={n_sample} but the training split has {len(train)} texts"
            )
        if n_eval > len(test):
            raise DataError(
                f"scale.eval.n_prompts={n_eval} but the held-out split has {len(test)} texts"
            )
        rng = np.random.default_rng(cfg.data.split_seed)
        write_jsonl(out / "train.jsonl", train)
        write_jsonl(out / "test.jsonl", test)
        write_jsonl(
            out / "sample_prompts.jsonl",
            [train[i] for i in rng.choice(len(train), n_sample, replace=False)],
        )
        write_jsonl(
            out / "eval_prompts.jsonl",
            [test[i] for i in rng.choice(len(test), n_eval, replace=False)],
        )
        return {"n_train": len(train), "n_test": len(test)}

    return cache.stage("data", params, [], build)
