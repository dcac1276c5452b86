"""Hydra callbacks: draw the figures (and write summary.md) once after a run or a
whole sweep. ``make figures`` calls ``plot_results`` with the same spec, read back
from ``figures.json`` in the results folder, so it redraws without Hydra."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipeline.infra import faults
from pipeline.infra.cache import (
    Cache,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    stable_hash,
)
from pipeline.report import winrates

STAMP = ".figures_key"  # which table and spec the figures were drawn from
SPEC = "figures.json"  # the figure spec of this results folder (kind, title)
DEFAULT_SPEC = {"kind": "reward_vs_kl", "title": "eval reward vs KL", "task": "sentiment"}


def outputs_for(kind: str, task: str = "sentiment", with_prompt: bool = False) -> list[str]:
    """File names one figure kind writes (PNG and PDF of each figure, plus the summary)."""
    from pipeline import tasks
    from pipeline.report.plots import figure_files

    names = [name for name, _ in figure_files(kind, tasks.by_name(task), with_prompt)]
    return names + [str(Path(n).with_suffix(".pdf")) for n in names] + ["summary.md"]


def _stand_in(table: Path) -> bool:
    """Whether a run table holds stand-in results (its ``stand_in`` column)."""
    import pandas as pd

    column = pd.read_csv(table).get("stand_in")
    return bool(column is not None and column.astype(str).str.lower().eq("true").any())


def read_spec(results_dir: Path) -> dict:
    path = Path(results_dir) / SPEC
    return {**DEFAULT_SPEC, **json.loads(path.read_text())} if path.is_file() else DEFAULT_SPEC


def plot_results(
    results_dir: str | Path, cache_dir: str | Path, spec: dict | None = None, force: bool = False
) -> Path | None:
    """Draw the figures of ``spec`` (default: the folder's ``figures.json``) and
    summary.md from ``runs.csv``. Skipped, and logged as reused, when the table and
    spec are unchanged since the last drawing, unless ``force``."""
    from pipeline import tasks
    from pipeline.report.digest import write_summary
    from pipeline.report.plots import FIGURES, draw, figure_files, has_kl_with_prompt

    results_dir = Path(results_dir)
    table = results_dir / "runs.csv"
    if not table.is_file():
        return None
    spec = {**DEFAULT_SPEC, **(dict(spec) if spec is not None else read_spec(results_dir))}
    task = tasks.by_name(spec["task"])
    if spec["kind"] not in FIGURES:
        raise ValueError(f"figures.kind={spec['kind']!r}: choose one of {sorted(FIGURES)}")
    start = time.perf_counter()
    # Parallel sweeps end at the same time: one process draws, the others then reuse.
    with FileLock(str(results_dir / ".figures.lock")):
        wins = results_dir / winrates.FILE  # a judged task's win rates (task=summarize)
        won = wins.is_file()
        key = stable_hash(
            {"table": file_sha256(table), "spec": spec, "v": 2}
            | ({"win_rates": file_sha256(wins)} if won else {})
        )[:16]
        stamp = results_dir / STAMP
        with_prompt = has_kl_with_prompt(table)
        outputs = [
            results_dir / name for name in outputs_for(spec["kind"], spec["task"], with_prompt)
        ] + ([results_dir / winrates.FIGURE] if won else [])
        if (
            not force
            and stamp.is_file()
            and stamp.read_text().strip() == key
            and all(p.is_file() for p in outputs)
        ):
            Cache(cache_dir).record("plot", key, "reused", time.perf_counter() - start)
            return outputs[0]
        faults.point("plot:start")
        atomic_write_json(results_dir / SPEC, spec)
        for name, column in figure_files(spec["kind"], task, with_prompt):
            draw(spec["kind"], table, results_dir / name, column, spec["title"], task)
        write_summary(
            table, results_dir / "summary.md", spec["title"], metric=task.metric,
            higher_is_better=task.higher_is_better,
        )  # fmt: skip
        if won:
            note = f" ({task.stand_in_note})" if _stand_in(table) else ""
            winrates.draw(wins, results_dir / winrates.FIGURE, spec["title"], note)
        atomic_write_text(stamp, key + "\n")
    Cache(cache_dir).record("plot", key, "computed", time.perf_counter() - start)
    print(f"[plot] wrote {len(outputs)} files to {results_dir}")
    return outputs[0]


def log_baseline(
    results_dir: str | Path, cache_dir: str | Path, wandb_cfg: Any, group: str
) -> None:
    """The SFT baseline as its own W&B run in the experiment's group (same fixed id on
    every re-run, so it is updated rather than duplicated)."""
    from pipeline.infra.logger import RunLogger
    from pipeline.report import runs as results

    table = Path(results_dir) / "runs.csv"
    if wandb_cfg is None or wandb_cfg.mode == "disabled" or not table.is_file():
        return
    sft = results.read(table)
    sft = sft[sft["loss"] == "sft"]
    if not len(sft):
        return
    row = sft.iloc[0]
    from pipeline import tasks

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
        from pipeline.modeling import distributed

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
        from pipeline.infra.errors import PipelineError
        from pipeline.orchestration import disk

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
