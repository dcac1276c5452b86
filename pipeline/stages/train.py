"""Stage 7b, train: DPO or ODPO on a set of pairs, starting from the SFT model,
with reference log-probs read from the cache (never recomputed per run).

The stage: what the trained model's key is made of, its inputs loaded from the cache,
the model saved. The optimisation loop itself is ``pipeline.modeling.preference_training``
(``train_pairs``, also reachable here), in one process or over the ranks of a launch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import get_constant_schedule_with_warmup

from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.errors import ConfigError
from pipeline.infra.logger import CSVLog, RunLogger
from pipeline.math.losses import uses_offset
from pipeline.math.offsets import compute_offset
from pipeline.modeling import distributed, lora, models
from pipeline.modeling import precision as precisions
from pipeline.modeling.checkpoint import Checkpointer, PrefixStore
from pipeline.modeling.preference_training import train_pairs
from pipeline.modeling.preference_training import warmup_steps as warmup_steps  # re-exported
from pipeline.modeling.seeding import set_seed
from pipeline.stages import artifacts

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# Settings that change how a run is observed, made safe or made fast, not the model it
# trains (activation checkpointing and compilation compute the same function).
NOT_IN_KEY = (
    "scale.train.log_every",
    "scale.train.checkpoint_every",
    "scale.train.checkpoint_seconds",
    "scale.train.gradient_checkpointing",
    "scale.train.compile",
    "scale.train.share_prefix",
)


def loss_identity(cfg: DictConfig) -> dict:
    """What defines the objective. DPO ignores alpha and the offset function, so
    they are left out of its key: DPO runs are shared across offset sweeps."""
    ident = {"loss": cfg.loss.name, "beta": float(cfg.loss.beta)}
    if uses_offset(cfg.loss.name):
        ident.update(alpha=float(cfg.loss.alpha), offset=cfg.offset.name)
    return ident


def pair_offsets(cfg: DictConfig, pairs: dict) -> torch.Tensor | None:
    """alpha * f(score_w, score_l) per pair, or None for losses without an offset."""
    if not uses_offset(cfg.loss.name):
        return None
    try:
        offsets = compute_offset(
            pairs["score_chosen"], pairs["score_rejected"], cfg.offset.name, cfg.loss.alpha
        )
    except ValueError as e:
        raise ConfigError(f"offset={cfg.offset.name}: {e}") from None
    return offsets.float()  # on the host, as the reference log-probs (see run)


def check_offsets(cfg: DictConfig, pairs: Artifact) -> None:
    """Refuse an offset that is undefined on these pairs before any training starts, and
    say how many pairs get no positive offset: with ``log_diff`` two ratings one apart
    give Delta = 0 (plain DPO) and closer ones a negative offset (less than DPO asks)."""
    offsets = pair_offsets(cfg, artifacts.pairs(pairs))
    if offsets is None or not distributed.is_main():
        return
    low = int((offsets <= 0).sum())
    print(
        f"[pairs] {cfg.offset.name}, alpha {cfg.loss.alpha:g}: {low} of {len(offsets)} pairs "
        f"get an offset <= 0 (min {float(offsets.min()):.3g}, mean {float(offsets.mean()):.3g})"
    )


def params(cfg: DictConfig) -> dict:
    """What the trained model depends on. How often we log or checkpoint does not."""
    train_params = OmegaConf.to_container(cfg.scale.train, resolve=True)
    for key in NOT_IN_KEY:
        train_params.pop(key.rsplit(".", 1)[1], None)
    if train_params.get("grad_accum", 1) == 1:  # one micro-batch: the key it always had
        train_params.pop("grad_accum", None)
    if train_params.get("warmup_fraction") is None:  # warm-up by steps: the key it always had
        train_params.pop("warmup_fraction", None)
    adapters = lora.spec((cfg.get("model") or {}).get("lora"))
    return {
        **loss_identity(cfg),
        "train": train_params,
        "seed": cfg.seed,
        **precisions.key(cfg),
        **({"lora": adapters} if adapters else {}),  # full fine-tuning: the key it always had
    }


def key(cfg: DictConfig, cache: Cache, inputs: list[Artifact]) -> str:
    """The training run's cache key, known before it trains (names its W&B run)."""
    return cache.key("train", params(cfg), inputs, version=VERSION)


def run(
    cfg: DictConfig,
    cache: Cache,
    sft: Artifact,
    samples: Artifact,
    pairs: Artifact,
    ref: Artifact,
    logger: RunLogger,
) -> Artifact:
    inputs = [sft, samples, pairs, ref]
    checkpointer = Checkpointer(
        cache.checkpoint_dir("train", key(cfg, cache, inputs)),
        cfg.scale.train.get("checkpoint_every", 0),
        "train",
        seconds=cfg.scale.train.get("checkpoint_seconds", 0),
    )

    group = distributed.training_group(cfg)  # the launch's ranks, or this process alone
    prefix = None
    # A warm-up by fraction differs between run lengths, so no run is another's prefix.
    by_fraction = cfg.scale.train.get("warmup_fraction") is not None
    if cfg.scale.train.get("share_prefix", False) and group.world == 1 and not by_fraction:
        # One folder per family of runs that differ only in how many pairs they train on.
        family = cache.identity_key("train-prefix", params(cfg), [sft, samples, ref], VERSION)
        prefix = PrefixStore(cache.root / "train-prefixes", family)

    def build(out: Path) -> dict:
        start = time.perf_counter()
        generator = set_seed(cfg.seed)
        p = artifacts.pairs(pairs)
        offsets = pair_offsets(cfg, p)
        s = artifacts.samples(samples)
        # (n_prompts, n_samples), kept on the host: each batch's rows are picked there and
        # sent without a synchronisation (models.to_device)
        reference_logps = torch.from_numpy(artifacts.reference_logps(ref)).float()
        for side in ("chosen", "rejected"):  # a scoped reference holds these (NaN elsewhere)
            if not torch.isfinite(reference_logps[p["prompt"], p[side]]).all():
                raise RuntimeError(
                    f"the reference artifact {ref} has no log-prob for a {side} response"
                )
        tokenizer = models.load_tokenizer(sft / "model")
        policy = _policy(cfg, sft, group)
        log = CSVLog(out / "train_log.csv")
        steps = train_pairs(
            cfg,
            policy,
            s,
            p,
            reference_logps,
            offsets,
            tokenizer.pad_token_id,
            generator,
            [log, logger] if group.is_main else [],
            checkpointer,
            group=group,
            prefix=prefix,
            schedule=_learning_rate_schedule,
        )
        log.close()
        # Under FSDP gathered to rank 0 and saved there as one process saves it.
        # Under LoRA the adapter alone, pointing at the SFT model it sits on.
        group.save_pretrained(policy, out / "model", base=sft / "model")
        group.release()
        if group.is_main:
            models.save_tokenizer(tokenizer, out / "model")
        seconds = time.perf_counter() - start
        if group.is_main:
            print(
                f"[train] {cfg.loss.name} beta={cfg.loss.beta}: {steps} steps on "
                f"{len(p['prompt'])} pairs in {seconds:.1f}s"
            )
        return {"train_seconds": round(seconds, 2), "steps": steps}

    # The cache builds with a launch's ranks only (None: this process builds alone).
    launch = group if group.world > 1 else None
    return cache.stage("train", params(cfg), inputs, build, version=VERSION, group=launch)


def _policy(cfg: DictConfig, sft: Artifact, group) -> torch.nn.Module:
    """The SFT model to train, in training mode without dropout; under LoRA with fresh
    adapters (at step 0 the policy is the reference)."""
    policy = models.load_model(sft / "model", group.load_device)  # FSDP: on the host
    policy = models.disable_dropout(policy).train()
    adapters = lora.spec((cfg.get("model") or {}).get("lora"))
    if adapters:
        policy = lora.for_training(policy, adapters, cfg.seed, precisions.of(cfg), group.world)
    return policy


def _learning_rate_schedule(optimizer: torch.optim.Optimizer, warmup: int) -> Any:
    """Constant after a linear warm-up of ``warmup`` steps: a run's first batches do not
    depend on its length, so a shorter run is a longer one's prefix (``PrefixStore``).
    Looked up in this module when training starts (the fidelity tests watch it)."""
    return get_constant_schedule_with_warmup(optimizer, warmup)
