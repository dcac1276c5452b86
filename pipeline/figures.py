"""Redraw every figure from the saved run tables, with no training:
``python -m pipeline.figures [results_dir ...]``."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import PROJECT_ROOT
from pipeline.callbacks import plot_results

TITLES = {"sentiment": "Sentiment control: eval reward vs KL"}


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or sorted(
        p.parent for p in (PROJECT_ROOT / "results").glob("*/runs.csv")
    )
    for d in dirs:
        plot_results(d, PROJECT_ROOT / ".cache" / "pipeline", TITLES.get(d.name, d.name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
