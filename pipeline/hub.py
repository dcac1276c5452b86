"""Resolve model and data set names, failing fast when the hub is needed offline."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import ConfigError


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def require_model(name: str, key: str) -> None:
    """A local directory is always fine; a hub id needs the hub or a local cache copy."""
    if Path(name).expanduser().exists() or not offline():
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
    except Exception:  # noqa: BLE001 - any failure here means "not cached"
        pass
    raise ConfigError(
        f"{key}='{name}' needs the Hugging Face hub, but HF_HUB_OFFLINE=1 and it is not cached; "
        "use scale=embedded or give a local path"
    )


def require_dataset(name: str, key: str) -> None:
    if Path(name).expanduser().exists() or not offline():
        return
    raise ConfigError(
        f"{key}='{name}' needs the Hugging Face hub, but HF_HUB_OFFLINE=1; "
        "use scale=embedded or give local data_files"
    )
