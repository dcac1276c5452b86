"""Training one policy over several processes: FSDP2 through ``accelerate``. This
module starts a launch (the environment, checks, the accelerator); ``pipeline.modeling.fsdp``
holds the sharded policy and its collectives.

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

One process (no launcher) gets None from ``group(cfg)`` and trains in ``OneProcess``,
the group of one, whose collectives are identities and whose policy is never sharded:
the training loop has one code path, and its numbers in one process are what they always
were. No cache key depends on the ``distributed`` setting (``plan.RUNTIME_KEYS``). The loss each rank back-propagates is its pairs' share of the
global-batch mean times the world size (FSDP averages gradients over ranks), so the
gradient, the clipping norm and the update are those of one process on the whole
batch, up to the order of float sums (tests/test_distributed.py: 2 processes against 1).
"""

from __future__ import annotations

import atexit
import os
from datetime import timedelta
from typing import Any

import torch
from omegaconf import DictConfig

from pipeline.infra.errors import ConfigError
from pipeline.modeling import precision as precisions
from pipeline.modeling.fsdp import Group
from pipeline.modeling.one_process import OneProcess

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


def training_group(cfg: DictConfig) -> Group | OneProcess:
    """The group the training loop runs in: this launch's ranks, or the group of one."""
    launch = group(cfg)
    return launch if launch is not None else OneProcess(cfg.device)


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
        # Not needed: every rank memory-maps the same safetensors file (see the README)
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


def finish(cfg: DictConfig) -> None:
    """Every rank of a launch leaves a run together: the followers wait here for rank 0's
    evaluation and tables. A follower that left at once tore its process group down while
    rank 0 still worked, and now and then aborted there ("terminate called without an
    active exception"), which failed the whole launch."""
    launch = group(cfg)
    if launch is not None:
        launch.broadcast(None)


def _close() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
