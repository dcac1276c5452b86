"""Redraw every figure from the saved run tables, with no training:
``python -m pipeline.figures [results_dir ...]`` (default: every results/*/runs.csv)."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from pipeline import PROJECT_ROOT
from pipeline.callbacks import plot_results


def title_for(results_dir: Path) -> str:
    """The task's figure title (results/<experiment>[_<scale>] -> conf/task/<experiment>.yaml)."""
    task_file = PROJECT_ROOT / "conf" / "task" / f"{results_dir.name.split('_')[0]}.yaml"
    return OmegaConf.load(task_file).title if task_file.is_file() else results_dir.name


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or sorted(
        p.parent for p in (PROJECT_ROOT / "results").glob("*/runs.csv")
    )
    for d in dirs:
        plot_results(d, PROJECT_ROOT / ".cache" / "pipeline", title_for(d), force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
