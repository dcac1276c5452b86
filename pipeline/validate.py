"""Start-up validation: every value checked before any expensive work, each
failure a one-line ConfigError (or DataError for a file) naming the key or file."""

from __future__ import annotations

import math
import re
from math import comb
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline import PROJECT_ROOT
from pipeline.errors import ConfigError, DataError
from pipeline.hub import require_dataset, require_model
from pipeline.io import read_samples_file
from pipeline.losses import LOSSES, USES_OFFSET
from pipeline.offsets import OFFSETS
from pipeline.pairs import all_pairs
from pipeline.scorers import SCORERS
from pipeline.stages.data import SOURCES
from pipeline.stages.train import OPTIMIZERS

WANDB_MODES = ("online", "offline", "disabled")
# Words that make a key name a credential, wherever they appear in it.
CREDENTIAL_WORDS = ("apikey", "secret", "password", "passwd")
# "<x>_token" is a credential (hf_token, auth_token) unless it names a tokenizer's special token.
SPECIAL_TOKENS = {"bos", "eos", "pad", "unk", "sep", "cls", "mask"}


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


def _at_most(cfg: DictConfig, key: str, maximum: float, strict: bool = False) -> None:
    value = _get(cfg, key)
    if value > maximum or (strict and value == maximum):
        raise ConfigError(f"{key}={value} must be {'<' if strict else '<='} {maximum:g}")


def _choice(cfg: DictConfig, key: str, allowed) -> None:
    if _get(cfg, key) not in allowed:
        raise ConfigError(f"{key}={_get(cfg, key)!r} is unknown; choose one of {sorted(allowed)}")


def looks_like_credential(name: str) -> bool:
    """api_key, apiKey, WANDB_API_KEY, hf_token, authToken, secret, password... but not
    tokenizer settings such as max_new_tokens, prompt_tokens or pad_token."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name)).lower().replace("-", "_").split("_")
    if any(word in "".join(words) for word in CREDENTIAL_WORDS):
        return True
    return any(w.endswith("token") for w in words) and not SPECIAL_TOKENS & set(words)


def credential_keys(node, prefix: str = "") -> list[str]:
    """Dotted keys anywhere in the tree whose name looks like a credential and whose
    value is set (interpolations are not resolved: ``${oc.env:...}`` counts as set)."""
    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, list):
        node = dict(enumerate(node))
    found = []
    for name, value in node.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(value, dict | list):
            found += credential_keys(value, key)
        elif value is not None and looks_like_credential(str(name)):
            found.append(key)
    return found


def refuse_credentials(cfg: DictConfig) -> None:
    """Credentials come from the environment only: a config ends up in W&B runs,
    stage config.json files and logs. The value is never echoed."""
    keys = credential_keys(cfg)
    if keys:
        raise ConfigError(
            f"{keys[0]} looks like a credential and config keys must not hold one (configs are "
            "logged and saved); remove it and set the environment variable instead "
            "(WANDB_API_KEY for W&B, HF_TOKEN for the Hugging Face hub)"
        )


def _looks_like_path(name: str) -> bool:
    """A local path rather than a hub id ("org/name" or "name")."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


def _hub_or_local(cfg: DictConfig, key: str, require) -> None:
    name = str(_get(cfg, key))
    if _looks_like_path(name) and not Path(name).expanduser().exists():
        raise ConfigError(f"{key}={name!r}: no such file or directory")
    require(name, key)


def _device(cfg: DictConfig) -> None:
    import torch

    try:
        device = torch.device(str(cfg.device))
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"device={cfg.device!r} is not a torch device (cpu, cuda, cuda:<n>, mps)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={cfg.device!r} but no CUDA GPU is available; use device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={cfg.device!r} but there are {torch.cuda.device_count()} CUDA GPU(s)"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={cfg.device!r} but MPS is not available; use device=cpu")


def _blank(path: Path, chunk: int = 1 << 20) -> bool:
    """True when a file holds nothing but whitespace (read in chunks: data files can be large)."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            if block.strip():
                return False
    return True


def _local_data_file(cfg: DictConfig) -> None:
    path = _get(cfg, "data.path")
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"data.path={path!r}: data.source=local needs a CSV or JSONL file")
    if not Path(path).is_file():
        raise DataError(f"data file {path} does not exist (data.path)")
    if _blank(Path(path)):
        raise DataError(f"data file {path} is empty (data.path)")


def _samples_file(cfg: DictConfig) -> None:
    """Read the whole samples file once (each problem names its line), then check
    that n_pairs and the offset fit the responses and scores it holds."""
    path = _get(cfg, "samples_file")
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"samples_file={path!r} must be the path of a JSONL file, or null")
    rows = read_samples_file(path)
    n_samples = len(rows[0]["responses"])
    if rows[0]["scores"] is None:
        most = len(rows) * comb(n_samples, 2)
        shape = f"{len(rows)} prompts x {n_samples} responses"
        where = f"pairs that {shape} in samples_file {path} can give"
    else:
        # Ties never make a pair, so only pairs with different scores count.
        most = len(all_pairs(np.array([r["scores"] for r in rows], dtype=np.float64)))
        where = f"pairs with different scores in samples_file {path} ({len(rows)} prompts)"
    if cfg.n_pairs > most:
        raise ConfigError(f"n_pairs={cfg.n_pairs} exceeds the {most} {where}")
    if rows[0]["scores"] is None or cfg.loss.name not in USES_OFFSET:
        return
    if cfg.offset.name == "log_ratio":  # log_diff is defined on every pair: ties make none
        for row in rows:
            for i, score in enumerate(row["scores"]):
                paired = any(other != score for other in row["scores"])
                if score <= 0 and paired:
                    raise ConfigError(
                        f"offset=log_ratio needs strictly positive scores, but samples_file "
                        f"{path} line {row['line']} has score {i} = {score}"
                    )


def _threads_fixed_by_scale(cfg: DictConfig) -> None:
    """The thread count changes floating-point sums (KL differed in the 6th digit
    between 1 and 2 threads), and it is in no cache key: so the scale fixes it, and a
    cached artifact always means one computation. Another count is refused."""
    if _get(cfg, "threads") is not None:
        _number(cfg, "threads", integer=True)
    shipped = PROJECT_ROOT / "conf" / "scale" / f"{cfg.scale.name}.yaml"
    fixed = (
        OmegaConf.select(OmegaConf.load(shipped), "scale.threads")
        if shipped.is_file()
        else _get(cfg, "scale.threads")
    )
    for key in ("scale.threads", "threads"):
        if _get(cfg, key) == fixed:
            continue
        raise ConfigError(
            f"{key}={_get(cfg, key)} but scale={cfg.scale.name} fixes threads={fixed}: "
            "the thread count changes the numbers and is not in the cache keys, so each scale "
            "uses one (define a new scale file to use another)"
        )


def validate(cfg: DictConfig) -> None:
    refuse_credentials(cfg)
    _choice(cfg, "loss.name", LOSSES)
    _choice(cfg, "offset.name", OFFSETS)
    _choice(cfg, "scorer.name", SCORERS)
    _choice(cfg, "scale.train.optimizer", OPTIMIZERS)
    _choice(cfg, "data.source", SOURCES)
    _choice(cfg, "wandb.mode", WANDB_MODES)
    _number(cfg, "loss.beta")
    _number(cfg, "loss.alpha", strict=False)
    _number(cfg, "seed", strict=False, integer=True)
    _number(cfg, "n_pairs", integer=True)
    _threads_fixed_by_scale(cfg)
    _choice(cfg, "verify", ("fast", "full"))
    for key in ("keep_weights", "fresh_table"):
        if not isinstance(_get(cfg, key), bool):
            raise ConfigError(f"{key}={_get(cfg, key)!r} must be true or false")
    if _get(cfg, "disk_free_gb") is not None:
        _number(cfg, "disk_free_gb", strict=False)
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
        "scorer.max_eval_rows",
    ):
        _number(cfg, key, integer=True)
    for key in (
        "scale.train.lr",
        "scale.sft.lr",
        "scale.train.max_grad_norm",
        "scale.sft.max_grad_norm",
    ):
        _number(cfg, key)
    for key in (
        "scale.train.warmup_steps",
        "scale.sft.warmup_steps",
        "scale.sft.seed",
        "scale.eval.seed",
        "data.split_seed",
    ):
        _number(cfg, key, strict=False, integer=True)
    for key in ("scale.train.checkpoint_every", "scale.sft.checkpoint_every"):
        if _get(cfg, key) is not None:  # optional: 0 or absent never checkpoints
            _number(cfg, key, strict=False, integer=True)
    _number(cfg, "scale.sft.weight_decay", strict=False)
    _number(cfg, "scale.sample.temperature", strict=False)
    _number(cfg, "scale.sample.top_p")
    _at_most(cfg, "scale.sample.top_p", 1)
    _number(cfg, "data.heldout_fraction")
    _at_most(cfg, "data.heldout_fraction", 1, strict=True)
    _number(cfg, "scorer.min_accuracy", strict=False)
    _at_most(cfg, "scorer.min_accuracy", 1)
    if cfg.scorer.name == "tfidf_logreg":
        _number(cfg, "scorer.max_ngram", integer=True)
        _number(cfg, "scorer.min_df")
        _number(cfg, "scorer.C")
    elif cfg.scorer.name == "keyword":
        words = _get(cfg, "scorer.keywords")
        if (
            not isinstance(words, ListConfig)
            or not words
            or not all(isinstance(w, str) and w.strip() for w in words)
        ):
            raise ConfigError(f"scorer.keywords={words!r} must be a non-empty list of strings")
        _number(cfg, "scorer.half")
    else:
        _number(cfg, "scorer.batch_size", integer=True)
    if cfg.scale.sample.n_samples < 2:
        raise ConfigError(
            f"scale.sample.n_samples={cfg.scale.sample.n_samples} must be >= 2 to form pairs"
        )
    if cfg.data.source == "local":
        _local_data_file(cfg)
    if _get(cfg, "samples_file") is not None:
        _samples_file(cfg)
    else:
        most = cfg.scale.sample.n_prompts * comb(cfg.scale.sample.n_samples, 2)
        if cfg.n_pairs > most:
            raise ConfigError(
                f"n_pairs={cfg.n_pairs} exceeds the {most} pairs that {cfg.scale.sample.n_prompts} prompts x "
                f"{cfg.scale.sample.n_samples} samples can give"
            )
    if cfg.scale.model.pretrained:
        _hub_or_local(cfg, "scale.model.pretrained", require_model)
    else:
        for key in ("vocab_size", "n_layer", "n_embd", "n_head", "n_positions"):
            _number(cfg, f"scale.model.{key}", integer=True)
        if cfg.scale.model.n_embd % cfg.scale.model.n_head:
            raise ConfigError(
                f"scale.model.n_embd={cfg.scale.model.n_embd} must be a multiple of "
                f"scale.model.n_head={cfg.scale.model.n_head}"
            )
        positions = cfg.scale.model.n_positions
        longest = max(
            1 + cfg.scale.sample.prompt_tokens + cfg.scale.sample.max_new_tokens,
            cfg.scale.sft.max_length,
        )
        if longest > positions:
            raise ConfigError(
                f"scale.model.n_positions={positions} is shorter than the longest sequence ({longest} tokens)"
            )
    _device(cfg)
    if cfg.scorer.name == "hf_pipeline":
        _hub_or_local(cfg, "scorer.model", require_model)
    if cfg.data.source == "hub":
        _hub_or_local(cfg, "data.name", require_dataset)
