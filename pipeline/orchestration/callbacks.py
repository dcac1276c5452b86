"""Hydra callbacks: check a sweep's disk need before its first job; draw the figures (and
write summary.md, ``pipeline.report.figures``) once after a run or a whole sweep, and log
the SFT baseline to W&B."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipeline import tasks
from pipeline.infra.cache import stable_hash
from pipeline.infra.errors import PipelineError
from pipeline.infra.logger import RunLogger
from pipeline.modeling import distributed
from pipeline.orchestration import disk
from pipeline.report import runs
from pipeline.report.figures import plot_results
from pipeline.report.spec import read_spec


def log_baseline(
    results_dir: str | Path, cache_dir: str | Path, wandb_cfg: Any, group: str
) -> None:
    """The SFT baseline as its own W&B run in the experiment's group (same fixed id on
    every re-run, so it is updated rather than duplicated)."""

    table = Path(results_dir) / "runs.csv"
    if wandb_cfg is None or wandb_cfg.mode == "disabled" or not table.is_file():
        return
    sft = runs.read(table)
    sft = sft[sft["loss"] == "sft"]
    if not len(sft):
        return
    row = sft.iloc[0]
    task = tasks.by_name(read_spec(results_dir)["task"])
    names = [task.metric, f"{task.metric}_se", "kl", "kl_se", "kl_exact"]
    metrics = {k: float(row[k]) for k in names}
    logger = RunLogger(
        wandb_cfg,
        name="sft-baseline",
        group=group,
        tags=["loss=sft"],
        config={"experiment": group, "eval_key": str(row["eval_key"]), "scale": row["scale"]},
        wandb_dir=Path(cache_dir) / "wandb",
        run_id=stable_hash([group, "sft", str(row["eval_key"])])[:16],
    )
    try:
        logger.summary({f"eval/{k}": v for k, v in metrics.items()})
    finally:
        logger.finish()


class PlotCallback(Callback):
    def __init__(
        self,
        results_dir: str,
        cache_dir: str,
        figures: Any,
        wandb: Any = None,
        group: str = "",
    ) -> None:
        if isinstance(figures, DictConfig):
            figures = OmegaConf.to_container(figures, resolve=True)
        self.args = (results_dir, cache_dir, dict(figures))
        self.wandb, self.group = wandb, group

    def _end(self) -> None:
        if not distributed.is_main():  # in a distributed launch rank 0 draws
            return
        # Hydra turns a callback's exception into a warning and exits 0; a sweep whose
        # figures or summary failed must not look successful.
        try:
            plot_results(*self.args)
            log_baseline(self.args[0], self.args[1], self.wandb, self.group)
        except Exception as e:
            print(f"error: drawing the figures in {self.args[0]} failed: {e}", file=sys.stderr)
            raise SystemExit(1) from e

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Before any job: the disk the whole sweep needs against the free space."""
        n_runs, n_seeds, workers = disk.sweep_size(config)
        try:
            disk.check(config, n_runs, n_seeds, workers, what=f"sweep of {n_runs} runs")
        except PipelineError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(1) from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end()
