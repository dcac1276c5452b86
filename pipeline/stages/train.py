"""Stage 7b, train: DPO or ODPO on a set of pairs, starting from the SFT model,
with reference log-probs read from the cache (never recomputed per run)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup

from pipeline import models
from pipeline.cache import Artifact, Cache
from pipeline.checkpoint import Checkpointer, loop_state, restore_loop
from pipeline.errors import ConfigError, PipelineError
from pipeline.logger import CSVLog, RunLogger
from pipeline.losses import LOSSES, USES_OFFSET
from pipeline.offsets import compute_offset
from pipeline.seeding import set_seed
from pipeline.stages import pairs as pairs_stage
from pipeline.stages import reference, sample

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# Settings that change how a run is observed or made safe, not the model it trains.
NOT_IN_KEY = ("scale.train.log_every", "scale.train.checkpoint_every")

OPTIMIZERS = {"adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}


def loss_identity(cfg: DictConfig) -> dict:
    """What defines the objective. DPO ignores alpha and the offset function, so
    they are left out of its key: DPO runs are shared across offset sweeps."""
    ident = {"loss": cfg.loss.name, "beta": float(cfg.loss.beta)}
    if cfg.loss.name in USES_OFFSET:
        ident.update(alpha=float(cfg.loss.alpha), offset=cfg.offset.name)
    return ident


def pair_offsets(cfg: DictConfig, pairs: dict) -> torch.Tensor | None:
    """alpha * f(score_w, score_l) per pair, or None for losses without an offset."""
    if cfg.loss.name not in USES_OFFSET:
        return None
    try:
        offsets = compute_offset(
            pairs["score_chosen"], pairs["score_rejected"], cfg.offset.name, cfg.loss.alpha
        )
    except ValueError as e:
        raise ConfigError(f"offset={cfg.offset.name}: {e}") from None
    return offsets.float().to(cfg.device)


def check_offsets(cfg: DictConfig, pairs: Artifact) -> None:
    """Refuse an offset that is undefined on these pairs before any training starts."""
    pair_offsets(cfg, pairs_stage.load(pairs))


def params(cfg: DictConfig) -> dict:
    """What the trained model depends on. How often we log or checkpoint does not."""
    train_params = OmegaConf.to_container(cfg.scale.train, resolve=True)
    for key in NOT_IN_KEY:
        train_params.pop(key.rsplit(".", 1)[1], None)
    return {**loss_identity(cfg), "train": train_params, "seed": cfg.seed}


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
    )

    def build(out: Path) -> dict:
        start = time.perf_counter()
        gen = set_seed(cfg.seed)
        p = pairs_stage.load(pairs)
        offsets = pair_offsets(cfg, p)
        s = sample.load(samples)
        # (n_prompts, n_samples), on the policy's device
        reference_logps = torch.from_numpy(reference.load(ref)).float().to(cfg.device)
        tok = models.load_tokenizer(sft / "model")
        policy = models.disable_dropout(models.load_model(sft / "model", cfg.device)).train()
        log = CSVLog(out / "train_log.csv")
        steps = train_pairs(
            cfg,
            policy,
            s,
            p,
            reference_logps,
            offsets,
            tok.pad_token_id,
            gen,
            [log, logger],
            checkpointer,
        )
        log.close()
        policy.save_pretrained(out / "model")
        tok.save_pretrained(out / "model")
        seconds = time.perf_counter() - start
        print(
            f"[train] {cfg.loss.name} beta={cfg.loss.beta}: {steps} steps on {len(p['prompt'])} pairs in {seconds:.1f}s"
        )
        return {"train_seconds": round(seconds, 2), "steps": steps}

    return cache.stage("train", params(cfg), inputs, build, version=VERSION)


def train_pairs(
    cfg: DictConfig,
    policy: torch.nn.Module,
    s: dict,
    p: dict,
    reference_logps: torch.Tensor,
    offsets: torch.Tensor | None,
    pad_id: int,
    gen: torch.Generator,
    sinks: list,
    checkpointer: Checkpointer | None = None,
) -> int:
    """The optimisation loop; returns the number of steps taken. With a
    ``checkpointer`` it saves its state every few steps and, when a saved state
    exists, resumes from it instead of starting again."""
    train_cfg = cfg.scale.train
    loss_fn = LOSSES[cfg.loss.name]
    n = len(p["prompt"])
    opt = OPTIMIZERS[train_cfg.optimizer](policy.parameters(), lr=train_cfg.lr)
    sched = get_constant_schedule_with_warmup(opt, train_cfg.warmup_steps)
    step, first_epoch, first_start, order = 0, 0, 0, None
    rows: list[tuple[dict, int]] = []  # every logged (metrics, step), kept for the checkpoint
    saved = checkpointer.load() if checkpointer else None
    if saved is not None:
        restore_loop(saved, policy, opt, sched, gen)
        step, first_epoch, first_start = saved["step"], saved["epoch"], saved["next_start"]
        order, rows = saved["order"].numpy(), saved["rows"]  # saved as a tensor, see below
        for metrics, logged_step in rows:  # the curves so far, so the logs are complete
            for sink in sinks:
                sink.log(metrics, logged_step)
        print(
            f"[train] resumed from the checkpoint after step {step - 1} ({checkpointer.directory})"
        )
    bs = train_cfg.batch_size
    for epoch in range(first_epoch, train_cfg.epochs):
        if order is None:
            # Epoch 0 uses the seeded pair order from the pairs stage; later epochs reshuffle.
            order = np.arange(n) if epoch == 0 else torch.randperm(n, generator=gen).numpy()
        starts = range(first_start if epoch == first_epoch else 0, n, bs)
        for start in tqdm(starts, desc=f"{cfg.loss.name} b={cfg.loss.beta}", leave=False):
            idx = order[start : start + bs]
            pi, ci, ri = p["prompt"][idx], p["chosen"][idx], p["rejected"][idx]
            prompts = [s["prompts"][i] for i in pi]
            chosen = [s["responses"][i][j] for i, j in zip(pi, ci, strict=True)]
            rejected = [s["responses"][i][j] for i, j in zip(pi, ri, strict=True)]
            # One forward over chosen and rejected together: (2B,) log-probs.
            logps = models.sequence_logps(policy, prompts + prompts, chosen + rejected, pad_id)
            policy_chosen, policy_rejected = logps[: len(idx)], logps[len(idx) :]
            ref_chosen, ref_rejected = reference_logps[pi, ci], reference_logps[pi, ri]
            offset = offsets[idx] if offsets is not None else None
            out = loss_fn(
                policy_chosen,
                policy_rejected,
                ref_chosen,
                ref_rejected,
                beta=cfg.loss.beta,
                offset=offset,
            )
            loss = out.loss.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(policy.parameters(), train_cfg.max_grad_norm)
            )
            if not (math.isfinite(loss.item()) and math.isfinite(grad_norm)):
                kept = (
                    f"; the last good checkpoint is kept in {checkpointer.directory}"
                    if checkpointer and checkpointer.load() is not None
                    else ""
                )
                raise PipelineError(
                    f"non-finite loss ({loss.item()}) or grad norm ({grad_norm}) at step {step}, "
                    f"epoch {epoch}, batch of pairs {start}..{start + len(idx) - 1}{kept}"
                )
            opt.step()
            sched.step()
            if step % train_cfg.log_every == 0:
                margins = out.chosen_rewards - out.rejected_rewards
                metrics = {
                    "train/loss": loss.item(),
                    "train/rewards_chosen": out.chosen_rewards.mean().item(),
                    "train/rewards_rejected": out.rejected_rewards.mean().item(),
                    "train/margins": margins.mean().item(),
                    "train/accuracy": (margins > 0).float().mean().item(),
                    "train/offset": offset.mean().item() if offset is not None else 0.0,
                    "train/grad_norm": grad_norm,
                }
                rows.append((metrics, step))
                for sink in sinks:
                    sink.log(metrics, step)
            if checkpointer and checkpointer.due(step):
                position = {"step": step + 1, "epoch": epoch, "next_start": start + bs}
                # The order as a tensor: checkpoints load with weights_only, which refuses
                # numpy arrays; int64 both ways, so the resumed batches are the same.
                position["order"] = torch.from_numpy(order)
                checkpointer.save(loop_state(policy, opt, sched, gen, **position, rows=rows), step)
            step += 1
        order = None
    policy.eval()
    return step
