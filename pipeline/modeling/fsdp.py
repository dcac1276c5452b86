"""The sharded policy of a distributed launch (``pipeline.modeling.distributed`` starts it):
each rank's share of a batch, FSDP2 preparation through accelerate, the collectives the
training loop uses, and gathering for the saved model and checkpoints. A checkpoint or a
saved model is the file a one-process run writes, whatever the world size.

``Group`` is one of the two groups the training loop
(``pipeline.modeling.preference_training``) runs in; ``distributed.OneProcess`` is the
other, the group of one, with the same methods."""

from __future__ import annotations

import math
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.modeling import lora, models

# ---- the batch: each rank's share ----------------------------------------------------


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of ``rank``'s contiguous share of ``n`` rows (sizes differ by <= 1)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def local_rows(idx: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's pair indices and their weights (1 real, 0 padding). Every rank gets
    ``ceil(len(idx) / world)`` rows, so all run the same number of forward and backward
    passes (each is a collective under FSDP), even a rank with no real pair: it pads
    with the batch's first pair, whose loss it multiplies by 0."""
    start, stop = shard(len(idx), rank, world)
    rows = math.ceil(len(idx) / world)
    mine = np.asarray(idx[start:stop])
    pad = rows - len(mine)
    weights = np.concatenate([np.ones(len(mine)), np.zeros(pad)]).astype(np.float32)
    return np.concatenate([mine, np.repeat(np.asarray(idx[:1]), pad)]).astype(mine.dtype), weights


# ---- the process group ----------------------------------------------------------------


class Group:
    """This process's rank in a distributed launch and the collectives training uses."""

    def __init__(self, accelerator: Any, timeout: timedelta = timedelta(minutes=60)) -> None:
        self.accelerator = accelerator
        self.rank = accelerator.process_index
        self.world = accelerator.num_processes
        self.is_main = accelerator.is_main_process
        self.device = torch.device(accelerator.device)
        # Loaded on the host: ``prepare`` moves each rank's shards to its device.
        self.load_device = torch.device("cpu")
        # Decisions (build or reuse, checkpoint now) go between the hosts over gloo: through
        # NCCL each would wait for the GPU's queued work (CPU-only, the default is gloo).
        self.host = None
        if self.device.type == "cuda":
            self.host = torch.distributed.new_group(backend="gloo", timeout=timeout)

    # -- collectives
    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (any picklable value), between the hosts."""
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0, group=self.host)
        return box[0]

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, where ranks might decide differently (wall clocks)."""
        return bool(self.broadcast(bool(flag)))

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (no host synchronisation)."""
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    # -- the batch
    def local(self, idx: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        rows, weights = local_rows(idx, self.rank, self.world)
        return rows, models.to_device(torch.from_numpy(weights), self.device)

    def batch_share(
        self, losses: torch.Tensor, weights: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        """This rank's share of the batch's mean loss: its real pairs' losses (padding
        weighs 0) over the whole batch's size."""
        return (losses * weights).sum() / batch_size

    def backward(self, share: torch.Tensor) -> None:
        """FSDP averages gradients over the ranks: times the world size, the batch's sum."""
        (share * self.world).backward()

    def batch_means(
        self, values: list[torch.Tensor], weights: torch.Tensor, batch_size: int
    ) -> list[torch.Tensor]:
        """Each per-pair tensor's mean over the whole batch: weighted sums over every
        rank's pairs (one collective for all of them), over the batch's size."""
        return list(self.sum((torch.stack(values) * weights).sum(-1)) / batch_size)

    def full_norm(self, norm: torch.Tensor) -> torch.Tensor:
        """The clipping norm as a plain tensor: a DTensor's is already the norm of every shard."""
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    # -- the model
    def prepare(
        self, policy: torch.nn.Module, opt: torch.optim.Optimizer
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """Shard the policy (FSDP2: one group per transformer block, the tied embedding
        and head together, then the root) and point ``opt`` at the shards. Returns the
        sharded policy (the same object) and the plain torch optimizer: the training
        loop steps it and its scheduler itself (accelerate's scheduler wrapper would
        step the warm-up ``world`` times per step)."""
        sharded, wrapped = self.accelerator.prepare(policy, opt)
        if getattr(sharded.config, "model_type", None) in models.PLAIN_HEAD:
            from torch.distributed.fsdp import register_fsdp_forward_method

            # models.sequence_logps runs the head on response positions only, through
            # base_model and the output embeddings: called on the sharded root's
            # submodules directly, the root's hooks would never gather its parameters.
            sharded.head_logits = types.MethodType(models.head_logits, sharded)
            register_fsdp_forward_method(sharded, "head_logits")
        if self.is_main:
            held, total = self.local_numel(sharded), sum(x.numel() for x in sharded.parameters())
            print(
                f"[train] FSDP over {self.world} processes: rank 0 holds {held} of {total} parameters"
            )
        return sharded, wrapped.optimizer

    def release(self) -> None:
        """Drop accelerate's references to the prepared policy and optimizer (and empty
        the CUDA cache), so that their shards are freed once training is saved."""
        self.accelerator.free_memory()

    def local_numel(self, policy: torch.nn.Module) -> int:
        """Parameters this rank holds (its shards)."""
        return sum(
            (p.to_local() if hasattr(p, "to_local") else p).numel() for p in policy.parameters()
        )

    def full_state(self, policy: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The unsharded weights on rank 0's host ({} on the others); every rank must call it."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(policy, options=options)

    def save_pretrained(
        self, policy: torch.nn.Module, directory: Path, base: Path | None = None
    ) -> None:
        """Gather the weights (a collective) and save them on rank 0 as a one-process run
        would: an unsharded copy of the model, built on the meta device and given the
        gathered tensors, then ``save_pretrained``; under LoRA the adapter alone."""
        state = self.full_state(policy)
        if not self.is_main:
            return
        if lora.is_peft(policy):
            lora.save(policy, directory, base, state=state)
        else:
            plain_model(policy, state).save_pretrained(directory)

    # -- checkpoints: the file a one-process run writes, whatever the world size
    def loop_state(
        self, policy: torch.nn.Module, opt: Any, sched: Any, gen: torch.Generator, **position: Any
    ) -> dict[str, Any] | None:
        """``checkpoint.loop_state`` of the unsharded loop on rank 0 (None elsewhere):
        the full model and optimizer state gathered to rank 0's host, with the
        optimizer's state keyed by parameter number as ``Optimizer.state_dict`` keys it.
        So a run resumes from it in one process or in any number of them."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        from pipeline.modeling import checkpoint

        model_state = self.full_state(policy)
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optim_state = get_optimizer_state_dict(policy, opt, options=options)
        if not self.is_main:
            return None
        if lora.is_peft(policy):  # the adapters alone, as a one-process LoRA checkpoint
            names = lora.trainable_names(policy) or set()
            model_state = {k: v for k, v in model_state.items() if k in names}
        else:
            model_state = plain_model(policy, model_state).state_dict()
        optim_state = _numbered(optim_state, _names(policy))
        shims = [
            types.SimpleNamespace(state_dict=lambda s=s: s) for s in (model_state, optim_state)
        ]
        return checkpoint.loop_state(*shims, sched, gen, **position)

    def load(self, checkpointer: Any) -> dict[str, Any] | None:
        """The last checkpoint as rank 0 read it; the other ranks get everything but the
        model and optimizer tensors, which ``restore`` sends from rank 0."""
        saved = checkpointer.load() if checkpointer is not None and self.is_main else None
        light = None if saved is None else {
            k: v for k, v in saved.items() if k not in ("model", "optimizer")
        }  # fmt: skip
        light = self.broadcast(light)
        if light is None:
            return None
        if self.is_main:
            return saved
        return {**light, "model": {}, "optimizer": {}}

    def restore(
        self, saved: dict[str, Any], policy: torch.nn.Module, opt: Any, sched: Any,
        gen: torch.Generator,
    ) -> None:  # fmt: skip
        """``checkpoint.restore_loop`` for the sharded loop: rank 0's full tensors are
        broadcast and each rank keeps its shards."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        # Under LoRA the checkpoint holds the adapters only: the rest is the SFT model.
        strict = not lora.is_peft(policy)
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=strict)
        model_state, optim_state = saved["model"], saved["optimizer"]
        if self.is_main:
            optim_state = _named(optim_state, _names(policy))
        set_model_state_dict(policy, model_state, options=options)
        set_optimizer_state_dict(policy, opt, optim_state, options=options)
        sched.load_state_dict(saved["scheduler"])
        gen.set_state(saved["rng"]["generator"])
        torch.set_rng_state(saved["rng"]["torch"])


def plain_model(policy: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """An unsharded model of the policy's class and config holding ``state`` (tensors
    shared, not copied); tied weights tied again."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(policy.config)
    missing, unexpected = plain.load_state_dict(state, strict=False, assign=True)
    plain.tie_weights()
    held = plain.state_dict()
    untied = [k for k in missing if k in held and held[k].is_meta]
    if unexpected or untied:
        raise RuntimeError(f"gathered state does not fit the model: {unexpected or untied}")
    return plain


def _names(policy: torch.nn.Module) -> list[str]:
    """Names of the trained parameters in the order the optimizer numbers them (tied ones
    once; under LoRA the adapters alone, as the loop builds its optimizer)."""
    return [name for name, p in policy.named_parameters() if p.requires_grad]


def _numbered(state: dict, names: list[str]) -> dict:
    """A full optimizer state keyed by parameter name -> keyed by number, as
    ``Optimizer.state_dict`` (one parameter group, built from ``parameters()``)."""
    number = {name: i for i, name in enumerate(names)}
    return {
        "state": {number[name]: value for name, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [number[name] for name in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def _named(state: dict, names: list[str]) -> dict:
    """The inverse of ``_numbered``."""
    return {
        "state": {names[i]: value for i, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [names[i] for i in group["params"]]}
            for group in state["param_groups"]
        ],
    }
