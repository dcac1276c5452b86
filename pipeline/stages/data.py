"""Stage 1, data: the task's training text (SFT, and the classifier's training rows) and
its held-out texts (prompts, and the classifier's accuracy). Where they come from is the
task's business (``Task.load_splits``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import tasks
from pipeline.infra import hub
from pipeline.infra.atomic import file_sha256, tree_sha256
from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.io import write_jsonl

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1

# Config keys this stage reads that do not change its output (where a download is kept).
NOT_IN_KEY = ("data.download_dir",)


def params(cfg: DictConfig) -> dict:
    """What the splits depend on: the data config, and a data file's contents."""
    params = OmegaConf.to_container(cfg.data, resolve=True)
    params.pop("download_dir", None)
    # Which responses the reference stage scores (task=custom): its key, not the splits'.
    params.pop("reference_responses", None)
    params.update(tasks.get(cfg).key_extras("data"))
    path = params.get("path")
    if isinstance(path, str) and path.strip():
        # A file is keyed by its contents, so editing it in place recomputes; so is a
        # folder (a saved ``datasets`` folder), by all of its files.
        file = Path(path).expanduser()
        params["path_sha256"] = file_sha256(file) if file.is_file() else None
        if file.is_dir():
            params["path_sha256"] = tree_sha256(file)
    name = params.get("hf_name")
    if isinstance(name, str) and name.strip():
        # A hub name is keyed by the commit it stands for (main moves on).
        params["hf_commit"] = hub.dataset_revision(name, params.get("revision"))
    return params


def run(cfg: DictConfig, cache: Cache) -> Artifact:
    """The training and held-out splits (shared by SFT, the classifier and prompts)."""

    def build(out: Path) -> dict:
        train, test = tasks.get(cfg).load_splits(cfg)
        write_jsonl(out / "train.jsonl", train)
        write_jsonl(out / "test.jsonl", test)
        print(f"[data] {cfg.data.source}: {len(train)} training and {len(test)} held-out texts")
        return {"n_train": len(train), "n_test": len(test)}

    return cache.stage("data", params(cfg), [], build, version=VERSION)
