"""Training one policy over several processes: FSDP2 through ``accelerate``.

A distributed run is started by a launcher (``make train-fsdp``, ``accelerate launch``,
``torchrun``, or SLURM tasks, see ``adopt_slurm_tasks``) that starts the whole
pipeline once per GPU with ``distributed=fsdp``. Every process runs the same stages in
the same order; only training is shared:

- rank 0 builds every other stage (data, SFT, sampling, scoring, reference log-probs,
  evaluation); the other ranks *follow*: their cache waits until rank 0 has published
  an artifact, then reuses it (``Cache(follow=True)``), so nothing is built twice and
  no directory is published twice;
- the train stage is built by all ranks together (``Cache.stage(..., group=...)``):
  rank 0 holds the stage's lock, decides build or reuse and tells the others; each rank
  takes its share of every global batch of pairs, FSDP shards the policy's parameters,
  gradients and optimizer state over the ranks, and rank 0 alone writes the logs,
  the checkpoints (full state dicts, the same file a one-process run writes) and the
  trained model;
- rank 0 evaluates and records the run; the others return once training is published.

One process (no launcher) never touches this module beyond ``group(cfg)`` returning
None: nothing changes for it, and no cache key depends on the ``distributed`` setting
(``plan.RUNTIME_KEYS``). The loss each rank back-propagates is its pairs' share of the
global-batch mean times the world size (FSDP averages gradients over ranks), so the
gradient, the clipping norm and the update are those of one process on the whole
batch, up to the order of float sums (tests/test_distributed.py: 2 processes against 1).
"""

from __future__ import annotations

import atexit
import math
import os
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from pipeline import models
from pipeline import precision as precisions
from pipeline.errors import ConfigError

MODES = ("none", "fsdp")
LAUNCH_HINT = (
    "make train-fsdp NPROC=<GPUs> ARGS='...', or "
    "accelerate launch --config_file conf/accelerate/fsdp.yaml --num_processes <GPUs> "
    "-m pipeline distributed=fsdp ..."
)


# ---- where this process stands: from the launcher's environment --------------------


def world_size() -> int:
    """Processes started by the launcher (1 without one)."""
    return int(os.environ.get("WORLD_SIZE") or 1)


def rank() -> int:
    return int(os.environ.get("RANK") or 0)


def launched() -> bool:
    """True in a multi-process launch (torchrun, accelerate launch, SLURM tasks)."""
    return world_size() > 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that builds, evaluates and records."""
    return rank() == 0


def mode(cfg: DictConfig) -> str:
    node = cfg.get("distributed")
    return str(node.get("name", "none")) if node is not None else "none"


def check(cfg: DictConfig) -> None:
    """Start-up refusals: a launch and a setting that disagree, and what FSDP cannot do."""
    name = mode(cfg)
    if name not in MODES:
        raise ConfigError(f"distributed={name!r}: choose one of {', '.join(MODES)}")
    if launched() and name == "none":
        raise ConfigError(
            f"this run was started as {world_size()} processes (WORLD_SIZE) but "
            "distributed=none: add distributed=fsdp to train one policy over them"
        )
    if name == "none":
        return
    if "WORLD_SIZE" not in os.environ:
        raise ConfigError(
            f"distributed={name} trains one policy over several processes; start them with "
            f"a launcher: {LAUNCH_HINT}"
        )
    if not launched():
        return  # a launch of one process: a plain run
    if torch.device(str(cfg.device)).index is not None:
        raise ConfigError(
            f"device={cfg.device} with distributed={name}: use device=cuda (each process "
            "takes the GPU of its local rank) or device=cpu"
        )
    if cfg.scale.train.get("compile", False):
        raise ConfigError(
            f"scale.train.compile=true is not supported with distributed={name} "
            "(compiling before sharding is untested here); set it to false"
        )


def adopt_slurm_tasks(cfg: DictConfig) -> None:
    """Under the SLURM launcher with ``hydra.launcher.tasks_per_node=N`` (and
    ``gpus_per_node=N``), submitit starts N copies of the job: give them the rank,
    world size and rendezvous address a launcher would (submitit's own helper). Does
    nothing for one task, outside SLURM, or when a launcher already set them."""
    if mode(cfg) == "none" or "WORLD_SIZE" in os.environ:
        return
    if int(os.environ.get("SLURM_NTASKS") or 1) <= 1 or "SLURM_PROCID" not in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment

    # Every GPU stays visible: each process picks the one of its local rank.
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


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

    def save_pretrained(self, policy: torch.nn.Module, directory: Path) -> None:
        """Gather the weights (a collective) and save them on rank 0 as a one-process run
        would: an unsharded copy of the model, built on the meta device and given the
        gathered tensors, then ``save_pretrained``."""
        state = self.full_state(policy)
        if self.is_main:
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

        from pipeline import checkpoint

        model_state = self.full_state(policy)
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optim_state = get_optimizer_state_dict(policy, opt, options=options)
        if not self.is_main:
            return None
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

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
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
    """Parameter names in the order the optimizer numbers them (tied ones once)."""
    return [name for name, _ in policy.named_parameters()]


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


# ---- the accelerator, once per process -------------------------------------------------

_group: Group | None = None
_settings: dict | None = None


def settings(cfg: DictConfig) -> dict:
    """What the FSDP plugin is built from: ``conf/distributed/fsdp.yaml`` and the run's
    precision (bf16: bf16 compute, float32 master weights and gradient reduction)."""
    d = cfg.distributed
    layers = d.get("layer_cls")
    return {
        "precision": precisions.of(cfg),
        "reshard_after_forward": bool(d.get("reshard_after_forward", True)),
        "layer_cls": [layers] if isinstance(layers, str) else list(layers or []) or None,
        "timeout_min": float(d.get("timeout_min", 60)),
        "cpu": torch.device(str(cfg.device)).type != "cuda",
    }


def group(cfg: DictConfig) -> Group | None:
    """This process's group in a distributed launch (built on first use), else None."""
    global _group, _settings
    if not launched() or mode(cfg) == "none":
        return None
    wanted = settings(cfg)
    if _group is None:
        timeout = timedelta(minutes=wanted["timeout_min"])
        _group, _settings = Group(_accelerator(wanted), timeout), wanted
        atexit.register(_close)
    elif wanted != _settings:
        raise ConfigError(
            f"one launch trains with one distributed setting: {_settings}, not {wanted}"
        )
    return _group


def agree(cfg: DictConfig, flag: Any) -> bool:
    """``flag`` as rank 0 sees it, on every rank (itself without a launch)."""
    g = group(cfg)
    return bool(flag) if g is None else g.agree(bool(flag))


def _accelerator(s: dict) -> Any:
    from accelerate import Accelerator, FullyShardedDataParallelPlugin
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, InitProcessGroupKwargs
    from torch.distributed.fsdp import MixedPrecisionPolicy

    mixed = None
    if s["precision"] == "bf16":
        mixed = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2,  # accelerate's default is still FSDP1
        reshard_after_forward=s["reshard_after_forward"],
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=s["layer_cls"],  # None: the model's _no_split_modules
        state_dict_type="FULL_STATE_DICT",
        mixed_precision_policy=mixed,
        cpu_ram_efficient_loading=False,
        activation_checkpointing=False,  # scale.train.gradient_checkpointing does it
    )
    timeout = InitProcessGroupKwargs(timeout=timedelta(minutes=s["timeout_min"]))
    # mixed_precision="no": precision is the pipeline's own (the plugin's policy above and
    # the training loop's autocast), whatever `accelerate launch` was told.
    acc = Accelerator(
        cpu=s["cpu"], fsdp_plugin=plugin, mixed_precision="no", kwargs_handlers=[timeout]
    )
    if acc.num_processes != world_size():
        raise RuntimeError(
            f"launched {world_size()} processes but accelerate sees {acc.num_processes}"
        )
    if acc.distributed_type == DistributedType.MULTI_CPU:
        # accelerate 1.15 turns FSDP on for GPU types only; on CPU (gloo) it would silently
        # wrap the model in DDP. Do what AcceleratorState does for GPUs, on both state
        # objects (AcceleratorState copies PartialState's type again inside prepare).
        PartialState().distributed_type = DistributedType.FSDP
        acc.state.distributed_type = DistributedType.FSDP
        acc.state.fsdp_plugin = plugin
    if acc.distributed_type != DistributedType.FSDP or not acc.is_fsdp2:
        raise RuntimeError(f"accelerate set up {acc.distributed_type}, not FSDP2")
    return acc


def _close() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
