"""Resolve model and data set names, failing fast when the hub is needed offline."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.infra.errors import ConfigError

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def set_offline(flag: bool) -> None:
    """Apply the ``offline`` config key to the Hugging Face libraries.

    They read their offline switch at import time, which happened before Hydra gave
    us the config, so the environment and their module constants are both set."""
    for var in OFFLINE_VARS:
        os.environ[var] = "1" if flag else "0"
    try:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = flag
    except (ImportError, AttributeError):
        pass
    try:
        import datasets.config as datasets_config

        datasets_config.HF_HUB_OFFLINE = flag
        datasets_config.HF_DATASETS_OFFLINE = flag
    except (ImportError, AttributeError):
        pass


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def _cached_on_hub(repo: str, filename: str, repo_type: str = "model") -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, filename, repo_type=repo_type), str)
    except Exception:  # noqa: BLE001 - any failure here means "not cached"
        return False


def require_model(name: str, key: str) -> None:
    """A local directory is always fine; a hub id needs the hub or a local cache copy."""
    if Path(name).expanduser().exists() or not offline() or _cached_on_hub(name, "config.json"):
        return
    raise ConfigError(
        f"{key}='{name}' needs the Hugging Face hub, but the pipeline is offline (offline=true) and it is "
        "not cached; use scale=embedded, give a local path, or pass offline=false"
    )


def require_dataset(name: str, key: str) -> None:
    if (
        Path(name).expanduser().exists()
        or not offline()
        or _cached_on_hub(name, "README.md", "dataset")
    ):
        return
    raise ConfigError(
        f"{key}='{name}' needs the Hugging Face hub, but the pipeline is offline (offline=true); "
        "use scale=embedded, data.source=local with data.path, or pass offline=false"
    )


def dataset_revision(name: str, revision: str | None) -> str | None:
    """The commit a data set name and revision stand for on the hub (``revision`` None:
    its main branch now), so that a cache key changes when the data set does. Offline, or
    when the hub cannot answer, the revision as given."""
    if offline() or Path(name).expanduser().exists():
        return revision
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(name, revision=revision).sha or revision
    except Exception:  # noqa: BLE001 - loading the data set will name the problem
        return revision
