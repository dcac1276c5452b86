"""Start-up validation: every value checked before any expensive work, each
failure a one-line ConfigError naming the key."""

from __future__ import annotations

from math import comb

from omegaconf import DictConfig

from pipeline.errors import ConfigError
from pipeline.hub import require_dataset, require_model
from pipeline.losses import LOSSES
from pipeline.offsets import OFFSETS
from pipeline.scorers import SCORERS


def _positive(cfg: DictConfig, key: str, allow_zero: bool = False) -> None:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}={value!r} must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}={value} must be {'>= 0' if allow_zero else '> 0'}")


def validate(cfg: DictConfig) -> None:
    if cfg.loss.name not in LOSSES:
        raise ConfigError(f"loss.name={cfg.loss.name!r} is unknown; choose one of {sorted(LOSSES)}")
    if cfg.offset.name not in OFFSETS:
        raise ConfigError(
            f"offset.name={cfg.offset.name!r} is unknown; choose one of {sorted(OFFSETS)}"
        )
    if cfg.scorer.name not in SCORERS:
        raise ConfigError(
            f"scorer.name={cfg.scorer.name!r} is unknown; choose one of {sorted(SCORERS)}"
        )
    _positive(cfg, "loss.beta")
    _positive(cfg, "loss.alpha", allow_zero=True)
    _positive(cfg, "seed", allow_zero=True)
    if not isinstance(cfg.n_pairs, int) or isinstance(cfg.n_pairs, bool):
        raise ConfigError(f"n_pairs={cfg.n_pairs!r} must be an integer")
    _positive(cfg, "n_pairs")
    for key in (
        "scale.sample.n_prompts",
        "scale.sample.n_samples",
        "scale.sample.max_new_tokens",
        "scale.sample.prompt_tokens",
        "scale.eval.n_prompts",
        "scale.train.batch_size",
        "scale.train.lr",
        "scale.train.epochs",
        "scale.sft.steps",
    ):
        _positive(cfg, key)
    most = cfg.scale.sample.n_prompts * comb(cfg.scale.sample.n_samples, 2)
    if cfg.n_pairs > most:
        raise ConfigError(
            f"n_pairs={cfg.n_pairs} exceeds the {most} pairs that {cfg.scale.sample.n_prompts} prompts x "
            f"{cfg.scale.sample.n_samples} samples can give"
        )
    if cfg.scale.model.pretrained:
        require_model(cfg.scale.model.pretrained, "scale.model.pretrained")
    if cfg.scorer.name == "hf_pipeline":
        require_model(cfg.scorer.model, "scorer.model")
    if cfg.data.source == "hub":
        require_dataset(cfg.data.name, "data.name")
