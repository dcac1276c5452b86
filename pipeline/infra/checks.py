"""Small start-up checks shared by validate.py, the tasks and the scorers: each failure is
one ConfigError (or DataError for a file) naming the key."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.infra.errors import ConfigError, DataError


def get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key)


def number(
    cfg: DictConfig, key: str, minimum: float = 0.0, strict: bool = True, integer: bool = False
) -> None:
    value = get(cfg, key)
    kind = "an integer" if integer else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise ConfigError(f"{key}={value!r} must be {kind}")
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value} must be finite")
    if value < minimum or (strict and value == minimum):
        raise ConfigError(f"{key}={value} must be {'>' if strict else '>='} {minimum:g}")


def at_most(cfg: DictConfig, key: str, maximum: float, strict: bool = False) -> None:
    value = get(cfg, key)
    if value > maximum or (strict and value == maximum):
        raise ConfigError(f"{key}={value} must be {'<' if strict else '<='} {maximum:g}")


def choice(cfg: DictConfig, key: str, allowed) -> None:
    if get(cfg, key) not in allowed:
        raise ConfigError(f"{key}={get(cfg, key)!r} is unknown; choose one of {sorted(allowed)}")


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id ("org/name" or "name")."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


def hub_or_local(cfg: DictConfig, key: str, require) -> None:
    name = str(get(cfg, key))
    if looks_like_path(name) and not Path(name).expanduser().exists():
        raise ConfigError(f"{key}={name!r}: no such file or directory")
    require(name, key)


def _blank(path: Path, chunk: int = 1 << 20) -> bool:
    """True when a file holds nothing but whitespace (read in chunks: data files can be large)."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            if block.strip():
                return False
    return True


def data_file(cfg: DictConfig, key: str = "data.path") -> Path:
    """``key`` as an existing, non-blank file, or a one-line error naming it."""
    path = get(cfg, key)
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{key}={path!r} must be the path of a data file")
    if not Path(path).expanduser().is_file():
        raise DataError(f"data file {path} does not exist ({key})")
    if _blank(Path(path).expanduser()):
        raise DataError(f"data file {path} is empty ({key})")
    return Path(path).expanduser()
