"""The DPO/ODPO optimisation loop over preference pairs (``pipeline.stages.train`` loads
the inputs and runs it; the objective itself is ``pipeline.modeling.preference_objective``).

One code path whatever the launch: the loop trains in a group, either the ranks of a
distributed launch (``fsdp.Group``: the policy sharded by FSDP2, each rank taking its
share of every batch) or ``distributed.OneProcess``, the group of one, whose collectives
return what they are given and whose preparation and gathering leave the policy as it is.
Either way the loss, gradient, clipping norm and logged metrics are the whole batch's.

Speed without changing the objective: mixed precision (``precision``), gradient
accumulation over ``scale.train.grad_accum`` micro-batches (the same mean loss over the
batch), optional activation checkpointing and ``torch.compile`` (of the transformer and of
the optimizer step, ``optim.compiled_step``), and no host synchronisation on steps that
neither log nor checkpoint: non-finite values are tracked on the device and reported, with
the first bad step, at the next log, checkpoint or the end (a checkpoint is never written
after one). With a ``checkpointer`` the loop saves its state every few steps and resumes
from a saved state instead of starting again; with a ``prefix`` store it starts from a
shorter run's state when that run trained this run's first batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup

from pipeline.infra.errors import PipelineError
from pipeline.math.losses import PreferenceOutput
from pipeline.modeling import lora
from pipeline.modeling import precision as precisions
from pipeline.modeling.checkpoint import Checkpointer, PrefixStore
from pipeline.modeling.fsdp import Group
from pipeline.modeling.one_process import OneProcess
from pipeline.modeling.optim import compiled_step, make_optimizer
from pipeline.modeling.preference_objective import PreferenceObjective

# The pair columns a shared prefix must equal, in this order (``PrefixStore.best``).
PAIR_COLUMNS = ("prompt", "chosen", "rejected", "score_chosen", "score_rejected")

# (optimizer, warm-up steps) -> learning-rate scheduler, stepped once per optimizer step.
Schedule = Callable[[torch.optim.Optimizer, int], Any]


def warmup_steps(train_cfg: DictConfig, total_steps: int) -> int:
    """The linear warm-up's length in steps: ``warmup_steps``, or with ``warmup_fraction``
    that share of the run's ``total_steps`` (rounded), so runs of every size warm up for the
    same share of their updates (by steps, data size and mean learning rate move together)."""
    fraction = train_cfg.get("warmup_fraction")
    if fraction is None:
        return int(train_cfg.warmup_steps or 0)
    return round(float(fraction) * total_steps)


def micro_batches(n_rows: int, accum: int) -> list[np.ndarray]:
    """Positions of ``accum`` micro-batches of about equal size over ``n_rows`` rows (fewer
    when there are fewer rows); each adds its share of the batch's mean loss."""
    parts = np.array_split(np.arange(n_rows), min(accum, n_rows))
    return [positions for positions in parts if len(positions)]


class PreferenceLoop:
    """One training run: the prepared policy, its optimizer and schedule, where in the
    pairs the run stands, and every logged (metrics, step) row, kept for the checkpoint."""

    def __init__(
        self,
        cfg: DictConfig,
        policy: torch.nn.Module,
        samples: dict,
        pairs: dict,
        reference_logps: torch.Tensor,
        offsets: torch.Tensor | None,
        pad_id: int,
        generator: torch.Generator,
        sinks: list,
        checkpointer: Checkpointer | None,
        group: Group | OneProcess,
        prefix: PrefixStore | None,
        schedule: Schedule,
    ) -> None:
        self.cfg, self.train_cfg, self.pairs = cfg, cfg.scale.train, pairs
        self.generator, self.sinks = generator, sinks
        self.checkpointer, self.group, self.prefix = checkpointer, group, prefix
        self.objective = PreferenceObjective(
            cfg, samples, pairs, reference_logps, offsets, pad_id, group.device
        )
        self.n_pairs, self.batch_size = len(pairs["prompt"]), self.train_cfg.batch_size
        self.steps_per_epoch = -(-self.n_pairs // self.batch_size)
        self.full_batches_end = (self.n_pairs // self.batch_size) * self.batch_size
        self.accum = int(self.train_cfg.get("grad_accum", 1) or 1)
        self.device = group.device
        precisions.configure(precisions.of(cfg))
        if self.train_cfg.get("gradient_checkpointing", False):
            policy.gradient_checkpointing_enable()
        self.compiled = bool(self.train_cfg.get("compile", False))
        if self.compiled:
            lora.core(policy).base_model.compile(dynamic=True)
        trained = [p for p in policy.parameters() if p.requires_grad]  # LoRA: the adapters
        optimizer = make_optimizer(self.train_cfg.optimizer, trained, self.train_cfg.lr)
        # Sharded first: the schedule must drive the optimizer that is stepped.
        self.policy, self.optimizer = group.prepare(policy, optimizer)
        total_steps = self.steps_per_epoch * self.train_cfg.epochs
        self.scheduler = schedule(self.optimizer, warmup_steps(self.train_cfg, total_steps))
        self.step, self.first_epoch, self.first_start = 0, 0, 0
        self.order: np.ndarray | None = None  # this epoch's pair order
        self.rows: list[tuple[dict, int]] = []
        self.pair_table: torch.Tensor | None = None  # the pairs as a prefix store compares them
        self.optimizer_step: Callable[[], Any] = self.optimizer.step
        self.first_bad = torch.full((), -1, dtype=torch.long, device=self.device)

    def _restore(self, saved: dict[str, Any]) -> None:
        """Model, optimizer, schedule and random state as saved; the curve so far to the
        sinks again, so that the logs are complete."""
        self.group.restore(saved, self.policy, self.optimizer, self.scheduler, self.generator)
        self.rows = saved["rows"]
        for metrics, logged_step in self.rows:
            for sink in self.sinks:
                sink.log(metrics, logged_step)

    def resume(self) -> None:
        """Go on from this run's last checkpoint, or else from a shorter run's state that
        trained the same first batches (a prefix store); neither: start from step 0."""
        saved = self.group.load(self.checkpointer)  # a collective under FSDP
        if saved is not None:
            self._restore(saved)
            self.step, self.first_epoch = saved["step"], saved["epoch"]
            self.first_start = saved["next_start"]
            self.order = saved["order"].numpy()  # saved as a tensor, see save_checkpoint
            if self.group.is_main:
                print(
                    f"[train] resumed from the checkpoint after step {self.step - 1} "
                    f"({self.checkpointer.directory})"
                )
        if self.prefix is not None:
            columns = [np.asarray(self.pairs[c], dtype=np.float64) for c in PAIR_COLUMNS]
            self.pair_table = torch.from_numpy(np.stack(columns, 1))
        shared = None
        if self.prefix is not None and saved is None:
            shared = self.prefix.best(self.pair_table, self.batch_size)
        if shared is not None:  # a shorter run of this family trained these batches already
            self._restore(shared)
            self.step, self.first_epoch, self.first_start = shared["step"], 0, shared["next_start"]
            print(
                f"[train] the first {self.first_start} pairs ({self.step} steps) are a "
                "shorter run's: resumed"
            )
        # Built after any restore: loading an optimizer state puts its saved float lr back.
        if self.compiled:
            self.optimizer_step = compiled_step(self.optimizer)

    def run(self) -> int:
        """Every remaining step of every epoch; returns the number of steps taken."""
        n_pairs, epochs = self.n_pairs, self.train_cfg.epochs
        desc = f"{self.cfg.loss.name} b={self.cfg.loss.beta}"
        for epoch in range(self.first_epoch, epochs):
            if self.order is None:
                # Epoch 0 uses the seeded pair order from the pairs stage; later epochs reshuffle.
                self.order = (
                    np.arange(n_pairs)
                    if epoch == 0
                    else torch.randperm(n_pairs, generator=self.generator).numpy()
                )
            first = self.first_start if epoch == self.first_epoch else 0
            starts = range(first, n_pairs, self.batch_size)
            for start in tqdm(starts, desc=desc, leave=False, disable=not self.group.is_main):
                self.train_step(epoch, start)
                self.step += 1
            self.order = None
        self.check_finite(self.step - 1, epochs - 1)
        self.policy.eval()
        return self.step

    def train_step(self, epoch: int, start: int) -> None:
        """One optimizer step on the batch of pairs at ``start`` of this epoch's order;
        then, when due, a log row, a shared prefix state and a checkpoint."""
        pair_indices = self.order[start : start + self.batch_size]
        self.optimizer.zero_grad(set_to_none=True)
        batch_loss, outputs, weights = self.accumulate_gradients(pair_indices)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.policy.parameters(), self.train_cfg.max_grad_norm
        )
        grad_norm = self.group.full_norm(grad_norm)
        batch_loss = self.group.sum(batch_loss)  # the batch's loss, the same on every rank
        finite = torch.isfinite(batch_loss) & torch.isfinite(grad_norm)
        self.first_bad = torch.where((self.first_bad < 0) & ~finite, self.step, self.first_bad)
        self.optimizer_step()
        self.scheduler.step()
        due = self.checkpointer is not None and self.checkpointer.due(self.step)
        if self.checkpointer is not None and self.checkpointer.seconds:
            due = self.group.agree(due)  # rank 0's wall clock decides for every rank
        if self.step % self.train_cfg.log_every == 0:
            self.check_finite(self.step, epoch)
            metrics = self.objective.metrics(
                self.group, batch_loss, grad_norm, outputs, weights, pair_indices
            )
            self.rows.append((metrics, self.step))
            for sink in self.sinks:
                sink.log(metrics, self.step)
        end = start + self.batch_size
        if self.prefix is not None and epoch == 0 and end == self.full_batches_end:
            self.check_finite(self.step, epoch)  # never share a state after a non-finite step
            self.save_prefix(end)
        if due:
            self.check_finite(self.step, epoch)
            self.save_checkpoint(epoch, end)

    def accumulate_gradients(
        self, pair_indices: np.ndarray
    ) -> tuple[torch.Tensor, list[PreferenceOutput], torch.Tensor]:
        """Back-propagate this rank's pairs of the batch, micro-batch by micro-batch; returns
        its share of the batch's mean loss, the per-pair terms and the pairs' weights."""
        # This rank's pairs and their weights: 0 marks a padding pair, so that every rank
        # runs as many passes as the others (one process: the whole batch, all real).
        rows, weights = self.group.local(pair_indices)
        batch_loss = torch.zeros((), device=self.device)
        outputs = []
        for positions in micro_batches(len(rows), self.accum):
            terms = self.objective.terms(self.policy, rows[positions])
            share = self.group.batch_share(terms.loss, weights[positions], len(pair_indices))
            self.group.backward(share)
            batch_loss = batch_loss + share.detach()
            outputs.append(terms)
        return batch_loss, outputs, weights

    def save_prefix(self, end: int) -> None:
        """The state after epoch 0's last full batch, for longer runs of this family."""
        state = self.group.loop_state(
            self.policy, self.optimizer, self.scheduler, self.generator,
            step=self.step + 1, epoch=0, next_start=end, order=torch.from_numpy(self.order),
            rows=self.rows, pairs=self.pair_table[:end],
        )  # fmt: skip
        if self.group.is_main:
            self.prefix.save(state, end)

    def save_checkpoint(self, epoch: int, end: int) -> None:
        """This run's state after this step; under FSDP gathered to rank 0 (every rank
        takes part) and written there."""
        position = {"step": self.step + 1, "epoch": epoch, "next_start": end}
        # The order as a tensor: checkpoints load with weights_only, which refuses numpy
        # arrays; int64 both ways, so the resumed batches are the same.
        position["order"] = torch.from_numpy(self.order)
        state = self.group.loop_state(
            self.policy, self.optimizer, self.scheduler, self.generator, **position, rows=self.rows
        )
        if self.group.is_main:
            self.checkpointer.save(state, self.step)

    def check_finite(self, now: int, epoch: int) -> None:
        """Raise if a step so far had a non-finite loss or grad norm, naming the first."""
        bad = int(self.first_bad)  # the one host synchronisation, on log/checkpoint steps only
        if bad < 0:
            return
        start = (bad % self.steps_per_epoch) * self.batch_size
        checkpointer = self.checkpointer
        kept = (
            f"; the last good checkpoint is kept in {checkpointer.directory}"
            if checkpointer and self.group.is_main and checkpointer.load() is not None
            else ""
        )
        raise PipelineError(
            f"non-finite loss or grad norm at step {bad}, epoch {bad // self.steps_per_epoch}, "
            f"batch of pairs {start}..{min(start + self.batch_size, self.n_pairs) - 1} "
            f"(found at step {now}, epoch {epoch}){kept}"
        )


def train_pairs(
    cfg: DictConfig,
    policy: torch.nn.Module,
    samples: dict,
    pairs: dict,
    reference_logps: torch.Tensor,
    offsets: torch.Tensor | None,
    pad_id: int,
    generator: torch.Generator,
    sinks: list,
    checkpointer: Checkpointer | None = None,
    group: Group | OneProcess | None = None,
    prefix: PrefixStore | None = None,
    schedule: Schedule = get_constant_schedule_with_warmup,
) -> int:
    """Train ``policy`` on ``pairs`` of ``samples``' responses; returns the number of
    steps taken. ``group``: the ranks of a distributed launch, or None for this process
    alone (``OneProcess`` on ``cfg.device``). ``schedule``: the learning rate's, built from
    the optimizer and the warm-up's length (``warmup_steps``)."""
    group = group if group is not None else OneProcess(cfg.device)
    loop = PreferenceLoop(
        cfg, policy, samples, pairs, reference_logps, offsets, pad_id, generator, sinks,
        checkpointer, group, prefix, schedule,
    )  # fmt: skip
    loop.resume()
    return loop.run()
