"""One place for randomness: every run calls set_seed once per stage it computes."""

from __future__ import annotations

import random

import numpy as np
import torch


def set_seed(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def configure_threads(n: int | None) -> None:
    """Pin intra-op threads (2 on the project's CPU machine); None leaves torch's default."""
    if n:
        torch.set_num_threads(int(n))
