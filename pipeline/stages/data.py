"""Stage 1, data: review text for SFT, labelled reviews for the classifier, and
held-out review texts whose first tokens become prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline import sources
from pipeline.cache import Artifact, Cache, file_sha256
from pipeline.errors import DataError
from pipeline.io import write_jsonl

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1

SOURCES = ("hub", "local", "rotten_tomatoes")
# Config keys this stage reads that do not change its output (where a download is kept).
NOT_IN_KEY = ("data.download_dir",)


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
        raise DataError(f"data.source: unknown source {src!r} ({', '.join(SOURCES)})")
    # A fixed split, independent of the run seed, so every run shares it.
    order = np.random.default_rng(data_cfg.split_seed).permutation(len(rows))
    n_test = int(round(len(rows) * data_cfg.heldout_fraction))
    return [rows[i] for i in order[n_test:]], [rows[i] for i in order[:n_test]]


def params(cfg: DictConfig) -> dict:
    """What the splits depend on: the data config, and a local file's contents."""
    params = OmegaConf.to_container(cfg.data, resolve=True)
    params.pop("download_dir", None)
    if cfg.data.source == "local":
        # A local file is keyed by its contents, so editing it in place recomputes.
        params["path_sha256"] = (
            file_sha256(Path(cfg.data.path)) if Path(cfg.data.path).is_file() else None
        )
    return params


def run(cfg: DictConfig, cache: Cache) -> Artifact:
    """The training and held-out splits (shared by SFT, the classifier and prompts)."""

    def build(out: Path) -> dict:
        train, test = load_rows(cfg.data, Path(cfg.data.download_dir))
        write_jsonl(out / "train.jsonl", train)
        write_jsonl(out / "test.jsonl", test)
        print(f"[data] {cfg.data.source}: {len(train)} training and {len(test)} held-out texts")
        return {"n_train": len(train), "n_test": len(test)}

    return cache.stage("data", params(cfg), [], build, version=VERSION)
