"""Stage 7b, train: DPO or ODPO on a set of pairs, starting from the SFT model,
with reference log-probs read from the cache (never recomputed per run)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup

from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.errors import ConfigError, PipelineError
from pipeline.infra.logger import CSVLog, RunLogger
from pipeline.math.losses import LOSSES, uses_offset
from pipeline.math.offsets import compute_offset
from pipeline.modeling import distributed, models
from pipeline.modeling import precision as precisions
from pipeline.modeling.checkpoint import Checkpointer, PrefixStore, loop_state, restore_loop
from pipeline.modeling.optim import compiled_step, make_optimizer
from pipeline.modeling.seeding import set_seed
from pipeline.stages import pairs as pairs_stage
from pipeline.stages import reference, sample

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
    return offsets.float()  # on the host, as the reference log-probs (see train_pairs)


def check_offsets(cfg: DictConfig, pairs: Artifact) -> None:
    """Refuse an offset that is undefined on these pairs before any training starts."""
    pair_offsets(cfg, pairs_stage.load(pairs))


def warmup_steps(train_cfg: DictConfig, total_steps: int) -> int:
    """The linear warm-up's length in steps: ``warmup_steps``, or with ``warmup_fraction``
    that share of the run's ``total_steps`` (rounded), so runs of every size warm up for the
    same share of their updates (by steps, data size and mean learning rate move together)."""
    fraction = train_cfg.get("warmup_fraction")
    if fraction is None:
        return int(train_cfg.warmup_steps or 0)
    return round(float(fraction) * total_steps)


def params(cfg: DictConfig) -> dict:
    """What the trained model depends on. How often we log or checkpoint does not."""
    train_params = OmegaConf.to_container(cfg.scale.train, resolve=True)
    for key in NOT_IN_KEY:
        train_params.pop(key.rsplit(".", 1)[1], None)
    if train_params.get("grad_accum", 1) == 1:  # one micro-batch: the key it always had
        train_params.pop("grad_accum", None)
    if train_params.get("warmup_fraction") is None:  # warm-up by steps: the key it always had
        train_params.pop("warmup_fraction", None)
    return {
        **loss_identity(cfg),
        "train": train_params,
        "seed": cfg.seed,
        **precisions.key(cfg),
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

    group = distributed.group(cfg)  # None unless this is a distributed launch
    main = group is None or group.is_main
    prefix = None
    # A warm-up by fraction differs between run lengths, so no run is another's prefix.
    by_fraction = cfg.scale.train.get("warmup_fraction") is not None
    if cfg.scale.train.get("share_prefix", False) and group is None and not by_fraction:
        # One folder per family of runs that differ only in how many pairs they train on.
        family = cache.identity_key("train-prefix", params(cfg), [sft, samples, ref], VERSION)
        prefix = PrefixStore(cache.root / "train-prefixes", family)

    def build(out: Path) -> dict:
        start = time.perf_counter()
        gen = set_seed(cfg.seed)
        p = pairs_stage.load(pairs)
        offsets = pair_offsets(cfg, p)
        s = sample.load(samples)
        # (n_prompts, n_samples), kept on the host: each batch's rows are picked there and
        # sent without a synchronisation (models.to_device)
        reference_logps = torch.from_numpy(reference.load(ref)).float()
        tok = models.load_tokenizer(sft / "model")
        # Distributed: loaded on the host; FSDP moves each rank's shards to its device.
        device = cfg.device if group is None else "cpu"
        policy = models.disable_dropout(models.load_model(sft / "model", device)).train()
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
            [log, logger] if main else [],
            checkpointer,
            group=group,
            prefix=prefix,
        )
        log.close()
        if group is None:
            policy.save_pretrained(out / "model")
        else:  # gathered to rank 0, saved there as one process saves it
            group.save_pretrained(policy, out / "model")
            group.release()
        if main:
            tok.save_pretrained(out / "model")
        seconds = time.perf_counter() - start
        if main:
            print(
                f"[train] {cfg.loss.name} beta={cfg.loss.beta}: {steps} steps on {len(p['prompt'])} pairs in {seconds:.1f}s"
            )
        return {"train_seconds": round(seconds, 2), "steps": steps}

    return cache.stage("train", params(cfg), inputs, build, version=VERSION, group=group)


def _batch_logps(policy, s: dict, pi, ci, ri, pad_id: int) -> torch.Tensor:
    """One forward over chosen and rejected together: (2B,) log-probs."""
    prompts = [s["prompts"][i] for i in pi]
    chosen = [s["responses"][i][j] for i, j in zip(pi, ci, strict=True)]
    rejected = [s["responses"][i][j] for i, j in zip(pi, ri, strict=True)]
    return models.sequence_logps(policy, prompts + prompts, chosen + rejected, pad_id)


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
    group: distributed.Group | None = None,
    prefix: PrefixStore | None = None,
) -> int:
    """The optimisation loop; returns the number of steps taken. With a
    ``checkpointer`` it saves its state every few steps and, when a saved state
    exists, resumes from it instead of starting again.

    Speed without changing the objective: mixed precision (``precision``), gradient
    accumulation over ``scale.train.grad_accum`` micro-batches (the same mean loss
    over the batch), optional activation checkpointing and ``torch.compile`` (of the
    transformer and of the optimizer step, ``optim.compiled_step``), and no
    host synchronisation on steps that neither log nor checkpoint: non-finite values
    are tracked on the device and reported, with the first bad step, at the next
    log, checkpoint or the end (a checkpoint is never written after one).

    With a ``group`` (a distributed launch) the policy is sharded over its ranks (FSDP)
    and each rank takes its share of every batch; the loss, gradient, clipping norm and
    logged metrics are those of the whole batch (``pipeline.modeling.distributed``)."""
    train_cfg = cfg.scale.train
    loss_fn = LOSSES[cfg.loss.name]
    n = len(p["prompt"])
    device = torch.device(cfg.device) if group is None else group.device
    prec = precisions.of(cfg)
    precisions.configure(prec)
    if train_cfg.get("gradient_checkpointing", False):
        policy.gradient_checkpointing_enable()
    compiled = bool(train_cfg.get("compile", False))
    if compiled:
        policy.base_model.compile(dynamic=True)
    opt = make_optimizer(train_cfg.optimizer, policy.parameters(), train_cfg.lr)
    if group is not None:
        policy, opt = group.prepare(policy, opt)
        if group.is_main:
            held, total = group.local_numel(policy), sum(x.numel() for x in policy.parameters())
            print(
                f"[train] FSDP over {group.world} processes: rank 0 holds {held} of {total} parameters"
            )
    sched = get_constant_schedule_with_warmup(
        opt, warmup_steps(train_cfg, -(-n // train_cfg.batch_size) * train_cfg.epochs)
    )
    step, first_epoch, first_start, order = 0, 0, 0, None
    rows: list[tuple[dict, int]] = []  # every logged (metrics, step), kept for the checkpoint
    if group is not None:
        saved = group.load(checkpointer)
    else:
        saved = checkpointer.load() if checkpointer else None
    if saved is not None:
        (restore_loop if group is None else group.restore)(saved, policy, opt, sched, gen)
        step, first_epoch, first_start = saved["step"], saved["epoch"], saved["next_start"]
        order, rows = saved["order"].numpy(), saved["rows"]  # saved as a tensor, see below
        for metrics, logged_step in rows:  # the curves so far, so the logs are complete
            for sink in sinks:
                sink.log(metrics, logged_step)
        if group is None or group.is_main:
            print(
                f"[train] resumed from the checkpoint after step {step - 1} ({checkpointer.directory})"
            )
    bs = train_cfg.batch_size
    # The pairs in training order with their scores: what a shared prefix must equal.
    columns = ("prompt", "chosen", "rejected", "score_chosen", "score_rejected")
    pair_rows = torch.from_numpy(np.stack([np.asarray(p[c], dtype=np.float64) for c in columns], 1))
    shared = prefix.best(pair_rows, bs) if prefix is not None and saved is None else None
    if shared is not None:  # a shorter run of this family trained these batches already
        restore_loop(shared, policy, opt, sched, gen)
        step, first_epoch, first_start = shared["step"], 0, shared["next_start"]
        rows = shared["rows"]
        for metrics, logged_step in rows:
            for sink in sinks:
                sink.log(metrics, logged_step)
        print(f"[train] the first {first_start} pairs ({step} steps) are a shorter run's: resumed")
    # Built after any restore: loading an optimizer state puts its saved float lr back.
    opt_step = compiled_step(opt) if compiled else opt.step
    full_batches_end = (n // bs) * bs  # where epoch 0's last full batch ends
    accum = int(train_cfg.get("grad_accum", 1) or 1)
    steps_per_epoch = -(-n // bs)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite step

    def check_finite(now: int, epoch: int) -> None:
        bad = int(first_bad)  # the one host synchronisation, on log/checkpoint steps only
        if bad < 0:
            return
        start = (bad % steps_per_epoch) * bs
        kept = (
            f"; the last good checkpoint is kept in {checkpointer.directory}"
            if checkpointer and (group is None or group.is_main) and checkpointer.load() is not None
            else ""
        )
        raise PipelineError(
            f"non-finite loss or grad norm at step {bad}, epoch {bad // steps_per_epoch}, "
            f"batch of pairs {start}..{min(start + bs, n) - 1} (found at step {now}, "
            f"epoch {epoch}){kept}"
        )

    for epoch in range(first_epoch, train_cfg.epochs):
        if order is None:
            # Epoch 0 uses the seeded pair order from the pairs stage; later epochs reshuffle.
            order = np.arange(n) if epoch == 0 else torch.randperm(n, generator=gen).numpy()
        starts = range(first_start if epoch == first_epoch else 0, n, bs)
        desc = f"{cfg.loss.name} b={cfg.loss.beta}"
        quiet = group is not None and not group.is_main
        for start in tqdm(starts, desc=desc, leave=False, **({"disable": True} if quiet else {})):
            idx = order[start : start + bs]
            opt.zero_grad(set_to_none=True)
            # This rank's pairs (all of them in one process) and their weights: 0 marks a
            # padding pair, so that every rank runs as many passes as the others.
            mine, weights = (idx, None) if group is None else group.local(idx)
            # Micro-batches of about bs/accum pairs; each adds its share of the batch mean.
            at = np.arange(len(mine))
            parts = [x for x in np.array_split(at, min(accum, len(mine))) if len(x)]
            outs, total = [], torch.zeros((), device=device)
            for sel in parts:
                part = mine[sel]
                pi, ci, ri = p["prompt"][part], p["chosen"][part], p["rejected"][part]
                with precisions.autocast(prec, device):
                    logps = _batch_logps(policy, s, pi, ci, ri, pad_id)
                offset = models.to_device(offsets[part], device) if offsets is not None else None
                out = loss_fn(
                    logps[: len(part)],
                    logps[len(part) :],
                    models.to_device(reference_logps[pi, ci], device),
                    models.to_device(reference_logps[pi, ri], device),
                    beta=cfg.loss.beta,
                    offset=offset,
                )
                if group is None:
                    loss_part = out.loss.sum() / len(idx)
                    loss_part.backward()
                else:  # FSDP averages gradients over ranks: times world, the batch's sum
                    loss_part = (out.loss * weights[sel]).sum() / len(idx)
                    (loss_part * group.world).backward()
                total = total + loss_part.detach()
                outs.append(out)
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), train_cfg.max_grad_norm)
            if group is not None:
                if hasattr(grad_norm, "full_tensor"):  # a DTensor: already the norm of every shard
                    grad_norm = grad_norm.full_tensor()
                total = group.sum(total)  # the batch's loss, the same on every rank
            finite = torch.isfinite(total) & torch.isfinite(grad_norm)
            first_bad = torch.where((first_bad < 0) & ~finite, step, first_bad)
            opt_step()
            sched.step()
            due = checkpointer is not None and checkpointer.due(step)
            if group is not None and checkpointer is not None and checkpointer.seconds:
                due = group.agree(due)  # rank 0's wall clock decides for every rank
            if step % train_cfg.log_every == 0:
                check_finite(step, epoch)
                chosen = torch.cat([o.chosen_rewards for o in outs])
                rejected = torch.cat([o.rejected_rewards for o in outs])
                margins = chosen - rejected
                offset = models.to_device(offsets[idx], device) if offsets is not None else None
                if group is None:
                    means = [chosen.mean(), rejected.mean(), margins.mean()]
                    means.append((margins > 0).float().mean())
                else:  # weighted sums over every rank's pairs, over the batch's size
                    per_pair = torch.stack([chosen, rejected, margins, (margins > 0).float()])
                    means = list(group.sum((per_pair * weights).sum(-1)) / len(idx))
                values = torch.stack(
                    [
                        total,
                        *means,
                        offset.mean() if offset is not None else torch.zeros((), device=device),
                        grad_norm.float(),
                    ]
                ).tolist()  # one transfer for the whole row
                metrics = dict(zip(METRIC_NAMES, values, strict=True))
                rows.append((metrics, step))
                for sink in sinks:
                    sink.log(metrics, step)
            if prefix is not None and epoch == 0 and start + bs == full_batches_end:
                check_finite(step, epoch)  # never share a state after a non-finite step
                state = loop_state(policy, opt, sched, gen, step=step + 1, epoch=0,
                                   next_start=start + bs, order=torch.from_numpy(order),
                                   rows=rows, pairs=pair_rows[: start + bs])  # fmt: skip
                prefix.save(state, start + bs)
            if due:
                check_finite(step, epoch)
                position = {"step": step + 1, "epoch": epoch, "next_start": start + bs}
                # The order as a tensor: checkpoints load with weights_only, which refuses
                # numpy arrays; int64 both ways, so the resumed batches are the same.
                position["order"] = torch.from_numpy(order)
                if group is None:
                    state = loop_state(policy, opt, sched, gen, **position, rows=rows)
                    checkpointer.save(state, step)
                else:  # gathered to rank 0 (every rank takes part), written there
                    state = group.loop_state(policy, opt, sched, gen, **position, rows=rows)
                    if group.is_main:
                        checkpointer.save(state, step)
            step += 1
        order = None
    check_finite(step - 1, train_cfg.epochs - 1)
    policy.eval()
    return step


METRIC_NAMES = (
    "train/loss",
    "train/rewards_chosen",
    "train/rewards_rejected",
    "train/margins",
    "train/accuracy",
    "train/offset",
    "train/grad_norm",
)
