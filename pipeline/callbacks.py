"""Hydra callbacks: draw the figures once after a run or a whole sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.cache import Cache, atomic_write_text, file_sha256, stable_hash

FIGURES = {"reward_vs_kl.png": "kl", "reward_vs_kl_exact.png": "kl_exact"}
STAMP = ".figures_key"  # which table and title the figures were drawn from


def plot_results(
    results_dir: str | Path, cache_dir: str | Path, title: str, force: bool = False
) -> Path | None:
    """Draw the figures from ``runs.csv``; skipped (and logged as reused) when the
    table and title are unchanged since the last drawing, unless ``force``."""
    results_dir = Path(results_dir)
    table = results_dir / "runs.csv"
    if not table.is_file():
        return None
    start = time.perf_counter()
    key = stable_hash({"table": file_sha256(table), "title": title, "figures": FIGURES})[:16]
    stamp = results_dir / STAMP
    outputs = [results_dir / name for name in FIGURES] + [
        (results_dir / name).with_suffix(".pdf") for name in FIGURES
    ]
    if (
        not force
        and stamp.is_file()
        and stamp.read_text().strip() == key
        and all(p.is_file() for p in outputs)
    ):
        Cache(cache_dir).record("plot", key, "reused", time.perf_counter() - start)
        return outputs[0]

    from pipeline.stages.plot import reward_vs_kl

    for name, kl_column in FIGURES.items():
        reward_vs_kl(table, results_dir / name, kl_column=kl_column, title=title)
    atomic_write_text(stamp, key + "\n")
    Cache(cache_dir).record("plot", key, "computed", time.perf_counter() - start)
    print(f"[plot] wrote {outputs[0]} and {len(outputs) - 1} more")
    return outputs[0]


class PlotCallback(Callback):
    def __init__(self, results_dir: str, cache_dir: str, title: str) -> None:
        self.args = (results_dir, cache_dir, title)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        plot_results(*self.args)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        plot_results(*self.args)
