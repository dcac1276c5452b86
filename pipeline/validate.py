"""Start-up validation: every value checked before any expensive work, each
failure a one-line ConfigError naming the key."""

from __future__ import annotations

import math
from math import comb

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError
from pipeline.hub import require_dataset, require_model
from pipeline.losses import LOSSES
from pipeline.offsets import OFFSETS
from pipeline.scorers import SCORERS
from pipeline.stages.data import SOURCES
from pipeline.stages.train import OPTIMIZERS


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key)


def _number(
    cfg: DictConfig, key: str, minimum: float = 0.0, strict: bool = True, integer: bool = False
) -> None:
    value = _get(cfg, key)
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


def _choice(cfg: DictConfig, key: str, allowed) -> None:
    if _get(cfg, key) not in allowed:
        raise ConfigError(f"{key}={_get(cfg, key)!r} is unknown; choose one of {sorted(allowed)}")


def validate(cfg: DictConfig) -> None:
    _choice(cfg, "loss.name", LOSSES)
    _choice(cfg, "offset.name", OFFSETS)
    _choice(cfg, "scorer.name", SCORERS)
    _choice(cfg, "scale.train.optimizer", OPTIMIZERS)
    _choice(cfg, "data.source", SOURCES)
    _number(cfg, "loss.beta")
    _number(cfg, "loss.alpha", strict=False)
    _number(cfg, "seed", strict=False, integer=True)
    _number(cfg, "n_pairs", integer=True)
    for key in (
        "scale.sample.n_prompts",
        "scale.sample.n_samples",
        "scale.sample.max_new_tokens",
        "scale.sample.prompt_tokens",
        "scale.sample.batch_size",
        "scale.eval.n_prompts",
        "scale.eval.batch_size",
        "scale.train.batch_size",
        "scale.train.epochs",
        "scale.train.log_every",
        "scale.sft.steps",
        "scale.sft.batch_size",
        "scale.sft.max_length",
    ):
        _number(cfg, key, integer=True)
    for key in (
        "scale.train.lr",
        "scale.sft.lr",
        "scale.train.max_grad_norm",
        "scale.sft.max_grad_norm",
    ):
        _number(cfg, key)
    for key in ("scale.train.warmup_steps", "scale.sft.warmup_steps"):
        _number(cfg, key, strict=False, integer=True)
    _number(cfg, "scale.sample.temperature", strict=False)
    _number(cfg, "scale.sample.top_p")
    if cfg.scale.sample.top_p > 1:
        raise ConfigError(f"scale.sample.top_p={cfg.scale.sample.top_p} must be <= 1")
    if cfg.scale.sample.n_samples < 2:
        raise ConfigError(
            f"scale.sample.n_samples={cfg.scale.sample.n_samples} must be >= 2 to form pairs"
        )
    most = cfg.scale.sample.n_prompts * comb(cfg.scale.sample.n_samples, 2)
    if cfg.n_pairs > most:
        raise ConfigError(
            f"n_pairs={cfg.n_pairs} exceeds the {most} pairs that {cfg.scale.sample.n_prompts} prompts x "
            f"{cfg.scale.sample.n_samples} samples can give"
        )
    if cfg.scale.model.pretrained:
        require_model(cfg.scale.model.pretrained, "scale.model.pretrained")
    else:
        positions = cfg.scale.model.n_positions
        longest = max(
            1 + cfg.scale.sample.prompt_tokens + cfg.scale.sample.max_new_tokens,
            cfg.scale.sft.max_length,
        )
        if longest > positions:
            raise ConfigError(
                f"scale.model.n_positions={positions} is shorter than the longest sequence ({longest} tokens)"
            )
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device={cfg.device!r} but no CUDA GPU is available; use device=cpu")
    if cfg.scorer.name == "hf_pipeline":
        require_model(cfg.scorer.model, "scorer.model")
    if cfg.data.source == "hub":
        require_dataset(cfg.data.name, "data.name")
