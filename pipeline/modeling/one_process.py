"""The group of one: the training loop's group when this process trains alone. Its
collectives return what they are given, and its preparation and gathering leave the policy as
it is (``pipeline.modeling.fsdp.Group`` is the other group, over a launch's ranks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.modeling import checkpoint, lora


class OneProcess:
    """The group of one a run without a launcher trains in: rank 0 of 1 on ``device``,
    with ``fsdp.Group``'s methods. Its collectives return what they are given, the
    policy is neither sharded nor gathered, and its reductions are the plain sums and
    means over the batch, the very operations one process has always run: the weighted
    form with weights all 1 is the same value, but not always the same float bits (a
    device may compute a mean otherwise than as the sum over n)."""

    rank, world, is_main = 0, 1, True

    def __init__(self, device: str | torch.device) -> None:
        self.device = self.load_device = torch.device(str(device))

    # -- collectives: over one rank, identities
    def broadcast(self, obj: Any) -> Any:
        return obj

    def agree(self, flag: bool) -> bool:
        return bool(flag)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return t

    # -- the batch: all of it here, every pair real (weight 1)
    def local(self, idx: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        return idx, torch.ones(len(idx))

    def batch_share(
        self, losses: torch.Tensor, weights: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        return losses.sum() / batch_size

    def backward(self, share: torch.Tensor) -> None:
        share.backward()

    def batch_means(
        self, values: list[torch.Tensor], weights: torch.Tensor, batch_size: int
    ) -> list[torch.Tensor]:
        return [v.mean() for v in values]

    def full_norm(self, norm: torch.Tensor) -> torch.Tensor:
        return norm

    # -- the model and its checkpoints: as they are
    def prepare(self, policy: torch.nn.Module, opt: Any) -> tuple[torch.nn.Module, Any]:
        return policy, opt

    def release(self) -> None:
        pass

    def save_pretrained(
        self, policy: torch.nn.Module, directory: Path, base: Path | None = None
    ) -> None:
        """The model, or under LoRA the adapter alone on ``base`` (the SFT folder)."""
        if lora.is_peft(policy):
            lora.save(policy, directory, base)
        else:
            policy.save_pretrained(directory)

    def load(self, checkpointer: Any) -> dict[str, Any] | None:
        return checkpointer.load() if checkpointer is not None else None

    def restore(
        self, saved: dict[str, Any], policy: torch.nn.Module, opt: Any, sched: Any,
        gen: torch.Generator,
    ) -> None:  # fmt: skip
        checkpoint.restore_loop(saved, policy, opt, sched, gen)

    def loop_state(
        self, policy: torch.nn.Module, opt: Any, sched: Any, gen: torch.Generator, **position: Any
    ) -> dict[str, Any]:
        return checkpoint.loop_state(policy, opt, sched, gen, **position)
