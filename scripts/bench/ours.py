"""Our side of the DPO comparison: the pipeline's real loop,
``pipeline.stages.train.train_pairs``, timed, with the reference log-probs computed
beforehand by ``pipeline.modeling.inference.batched_logps`` (the reference stage's
function), timed apart. Also ``Timed``, the record of one timed training call that the
TRL side (``trl_side.py``) returns too, and the ``median`` the figures are taken with.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from scripts.bench import synthetic as syn
from scripts.bench.synthetic import PAD


class LossRecorder:
    """A ``train_pairs`` sink that keeps each logged step's loss and when it was logged
    (``train_pairs`` logs once the step's optimizer update is done)."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}
        self.times: dict[int, float] = {}

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.times[step] = time.perf_counter()
        self.losses[step] = float(metrics["train/loss"])


@dataclass
class Timed:
    """One timed training call."""

    seconds: float  # the whole call
    steps: int
    losses: list[float]  # TRL: every step's; ours: the logged steps', in order
    step_times: dict[int, float]  # step -> when its update was done

    def seconds_per_step(self) -> float | None:
        """Steady state: from the end of the first timed step to the end of the last,
        per step (start-up, the first step and the end of the call left out)."""
        if len(self.step_times) < 2:
            return None
        first, last = min(self.step_times), max(self.step_times)
        return (self.step_times[last] - self.step_times[first]) / (last - first)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# ---- ours ---------------------------------------------------------------------------


def reference_table(
    ref_model: torch.nn.Module, samples: dict, p: dict, batch_size: int, precision: str = "fp32"
) -> tuple[torch.Tensor, float]:
    """(n_prompts, n_samples) reference log-probs (NaN where no pair needs one) from
    the reference stage's function (under ``precision``), and the seconds that pass took."""
    from pipeline.modeling.inference import batched_logps

    prompts, responses, cells = syn.used_responses(samples, p)
    ref_model.eval()
    start = time.perf_counter()
    logps = batched_logps(ref_model, prompts, responses, PAD, batch_size, precision)
    seconds = time.perf_counter() - start
    table = np.full((len(samples["prompts"]), len(samples["responses"][0])), np.nan)
    rows, cols = zip(*cells, strict=True)
    table[list(rows), list(cols)] = logps
    return torch.from_numpy(table).float(), seconds


def run_ours(
    cfg: DictConfig, policy: torch.nn.Module, samples: dict, p: dict, reference: torch.Tensor
) -> Timed:
    """One call of the real loop."""
    from pipeline.modeling.seeding import set_seed
    from pipeline.stages import train

    gen = set_seed(int(cfg.seed))
    offsets = train.pair_offsets(cfg, p)
    sink = LossRecorder()
    policy.train()
    start = time.perf_counter()
    steps = train.train_pairs(cfg, policy, samples, p, reference, offsets, PAD, gen, [sink], None)
    seconds = time.perf_counter() - start
    return Timed(seconds, steps, [sink.losses[k] for k in sorted(sink.losses)], sink.times)
