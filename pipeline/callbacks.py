"""Hydra callbacks: draw the figure once after a run or a whole sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.cache import Cache, file_sha256


def plot_results(results_dir: str | Path, cache_dir: str | Path, title: str) -> Path | None:
    from pipeline.stages.plot import reward_vs_kl

    table = Path(results_dir) / "runs.csv"
    if not table.is_file():
        return None
    start = time.perf_counter()
    out = reward_vs_kl(table, Path(results_dir) / "reward_vs_kl.png", title=title)
    reward_vs_kl(
        table, Path(results_dir) / "reward_vs_kl_exact.png", kl_column="kl_exact", title=title
    )
    Cache(cache_dir).record(
        "plot", file_sha256(table)[:16], "computed", time.perf_counter() - start
    )
    print(f"[plot] wrote {out}")
    return out


class PlotCallback(Callback):
    def __init__(self, results_dir: str, cache_dir: str, title: str) -> None:
        self.args = (results_dir, cache_dir, title)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        plot_results(*self.args)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        plot_results(*self.args)
