"""Redraw every figure and summary from the saved run tables, with no training:
``python -m pipeline.report.figures [results_dir ...]`` (default: every results/*/runs.csv).
Each folder's ``figures.json`` (written by the run that filled it) says what to draw."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline import PROJECT_ROOT
from pipeline.orchestration.callbacks import plot_results


def main(argv: list[str]) -> int:
    start = time.perf_counter()
    dirs = [Path(a) for a in argv] or sorted(
        p.parent for p in (PROJECT_ROOT / "results").glob("*/runs.csv")
    )
    for d in dirs:
        plot_results(d, PROJECT_ROOT / ".cache" / "pipeline", force=True)
    print(f"[figures] redrew {len(dirs)} results folders in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
