"""Start-up validation: every value checked before any expensive work, each
failure a one-line ConfigError (or DataError for a file) naming the key or file."""

from __future__ import annotations

import re

from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline import PROJECT_ROOT, tasks
from pipeline.infra.checks import at_most, choice, get, hub_or_local, number
from pipeline.infra.errors import ConfigError
from pipeline.infra.hub import require_model
from pipeline.infra.wheels import PINS
from pipeline.math.losses import LOSSES
from pipeline.math.offsets import OFFSETS
from pipeline.modeling import distributed
from pipeline.modeling.loading import ATTENTIONS
from pipeline.modeling.optim import OPTIMIZERS
from pipeline.scoring import scorers

WANDB_MODES = ("online", "offline", "disabled")
# Words that make a key name a credential, wherever they appear in it.
CREDENTIAL_WORDS = ("apikey", "secret", "password", "passwd")
# "<x>_token" is a credential (hf_token, auth_token) unless it names a tokenizer's special token.
SPECIAL_TOKENS = {"bos", "eos", "pad", "unk", "sep", "cls", "mask"}


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


def _threads_fixed_by_scale(cfg: DictConfig) -> None:
    """The thread count changes floating-point sums (KL differed in the 6th digit
    between 1 and 2 threads), and it is in no cache key: so the scale fixes it, and a
    cached artifact always means one computation. Another count is refused."""
    if get(cfg, "threads") is not None:
        number(cfg, "threads", integer=True)
    shipped = PROJECT_ROOT / "conf" / "scale" / f"{cfg.scale.name}.yaml"
    fixed = (
        OmegaConf.select(OmegaConf.load(shipped), "scale.threads")
        if shipped.is_file()
        else get(cfg, "scale.threads")
    )
    for key in ("scale.threads", "threads"):
        if get(cfg, key) == fixed:
            continue
        raise ConfigError(
            f"{key}={get(cfg, key)} but scale={cfg.scale.name} fixes threads={fixed}: "
            "the thread count changes the numbers and is not in the cache keys, so each scale "
            "uses one (define a new scale file to use another)"
        )


def _warmup(cfg: DictConfig) -> None:
    """Warm-up by steps or as a fraction of the run: one, not both."""
    fraction = get(cfg, "scale.train.warmup_fraction")
    if fraction is None:
        return
    number(cfg, "scale.train.warmup_fraction", strict=False)
    at_most(cfg, "scale.train.warmup_fraction", 1)
    if get(cfg, "scale.train.warmup_steps"):
        raise ConfigError(
            f"scale.train.warmup_fraction={fraction} and scale.train.warmup_steps="
            f"{get(cfg, 'scale.train.warmup_steps')} are both set; give one "
            "(scale.train.warmup_steps=0 to warm up by the fraction)"
        )


def validate(cfg: DictConfig) -> None:
    """What cuts across tasks; the task checks its data (``Task.check``) and the scorer its
    own keys (``scorers.check``)."""
    refuse_credentials(cfg)
    if get(cfg, "samples_file") is not None:
        raise ConfigError(
            "samples_file is replaced by task=custom: run "
            "`python -m pipeline task=custom data.path=<your file.jsonl>` (see README)"
        )
    task = tasks.get(cfg)
    _run_keys(cfg)
    _scale_keys(cfg)
    _model_keys(cfg)
    _device(cfg)
    distributed.check(cfg)
    # Last, as they may read files or ask the hub: the scorer's keys, the task's data.
    task = tasks.get(cfg)
    scorers.check(
        cfg, optional=task.rates_own_samples or task.given_samples_params(cfg) is not None
    )
    task.check(cfg)
    most, where = task.max_pairs(cfg)
    if cfg.n_pairs > most and not task.cap_pairs:  # a capped task uses what its data gives
        raise ConfigError(f"n_pairs={cfg.n_pairs} exceeds the {most} {where}")


def _run_keys(cfg: DictConfig) -> None:
    """The run's own keys: loss, offset, optimizer, W&B mode, seed, pairs, threads, the
    verify mode and the true/false switches."""
    choice(cfg, "loss.name", LOSSES)
    choice(cfg, "offset.name", OFFSETS)
    choice(cfg, "scale.train.optimizer", OPTIMIZERS)
    choice(cfg, "wandb.mode", WANDB_MODES)
    number(cfg, "loss.beta")
    number(cfg, "loss.alpha", strict=False)
    number(cfg, "seed", strict=False, integer=True)
    number(cfg, "n_pairs", integer=True)
    _threads_fixed_by_scale(cfg)
    choice(cfg, "verify", ("fast", "full"))
    if get(cfg, "model.attention") is not None:  # model files before it: SDPA
        choice(cfg, "model.attention", ATTENTIONS)
    optional = ()
    if get(cfg, "eval") is not None:  # absent in configs composed before protocols: ours
        choice(cfg, "eval.protocol", ("ours", "authors"))
        optional = ("eval.kl_with_prompt",)
    for key in ("keep_weights", "fresh_table", *optional):
        if not isinstance(get(cfg, key), bool):
            raise ConfigError(f"{key}={get(cfg, key)!r} must be true or false")
    if get(cfg, "disk_free_gb") is not None:
        number(cfg, "disk_free_gb", strict=False)


def _scale_keys(cfg: DictConfig) -> None:
    """The scale's counts, rates, warm-up, checkpointing and sampling settings."""
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
        number(cfg, key, integer=True)
    for key in ("scale.train.lr", "scale.sft.lr", "scale.train.max_grad_norm",
                "scale.sft.max_grad_norm"):  # fmt: skip
        number(cfg, key)
    for key in ("scale.train.warmup_steps", "scale.sft.warmup_steps", "scale.sft.seed",
                "scale.eval.seed"):  # fmt: skip
        number(cfg, key, strict=False, integer=True)
    _warmup(cfg)
    for key in ("scale.train.checkpoint_every", "scale.sft.checkpoint_every"):
        if get(cfg, key) is not None:  # optional: 0 or absent never checkpoints
            number(cfg, key, strict=False, integer=True)
    number(cfg, "scale.sft.weight_decay", strict=False)
    number(cfg, "scale.sample.temperature", strict=False)
    number(cfg, "scale.sample.top_p")
    at_most(cfg, "scale.sample.top_p", 1)
    if cfg.scale.sample.n_samples < 2:
        raise ConfigError(
            f"scale.sample.n_samples={cfg.scale.sample.n_samples} must be >= 2 to form pairs"
        )


def _model_keys(cfg: DictConfig) -> None:
    """A pretrained model must exist; a fresh one's shape must fit the longest sequence."""
    m = cfg.get("model") or {}
    if m.get("chat_template", False) not in (True, False, "auto", "true", "false"):
        raise ConfigError(
            f"model.chat_template={m.get('chat_template')!r}: choose auto, true or false"
        )
    if m.get("bos", True) not in (True, False, "auto"):
        raise ConfigError(f"model.bos={m.get('bos')!r}: choose auto, true or false")
    if m.get("wheel"):
        if m.wheel not in PINS:
            raise ConfigError(
                f"model.wheel={m.wheel!r} is not a pinned wheel: one of {', '.join(PINS)}"
            )
        return
    if cfg.scale.model.pretrained:
        hub_or_local(cfg, "scale.model.pretrained", require_model)
    else:
        for key in ("vocab_size", "n_layer", "n_embd", "n_head", "n_positions"):
            number(cfg, f"scale.model.{key}", integer=True)
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
