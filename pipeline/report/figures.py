"""Every figure and summary.md of a results folder, drawn from its run tables.

``plot_results`` is what a sweep's end calls (the Hydra callback in
``pipeline/orchestration/callbacks.py``) and what ``make figures`` calls for every folder,
with no training: ``python -m pipeline.report.figures [results_dir ...]`` (default: every
results/*/runs.csv). Each folder's ``figures.json`` says what to draw."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from filelock import FileLock

from pipeline import PROJECT_ROOT, tasks
from pipeline.infra import faults
from pipeline.infra.cache import (
    Cache,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    stable_hash,
)
from pipeline.report import plots, winrates
from pipeline.report.digest import write_summary
from pipeline.report.plots import FIGURES, draw, figure_files, has_kl_with_prompt
from pipeline.report.spec import DEFAULT_SPEC, SPEC, read_spec

STAMP = ".figures_key"  # which table and spec the figures were drawn from


def outputs_for(kind: str, task: str = "sentiment", with_prompt: bool = False) -> list[str]:
    """File names one figure kind writes (PNG and PDF of each figure, plus the summary)."""
    names = [name for name, _ in figure_files(kind, tasks.by_name(task), with_prompt)]
    return names + [str(Path(n).with_suffix(".pdf")) for n in names] + ["summary.md"]


def plot_results(
    results_dir: str | Path, cache_dir: str | Path, spec: dict | None = None, force: bool = False
) -> Path | None:
    """Draw the figures of ``spec`` (default: the folder's ``figures.json``) and
    summary.md from ``runs.csv``. Skipped, and logged as reused, when the table and
    spec are unchanged since the last drawing, unless ``force``."""
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
            note = plots.stand_in_note(task, pd.read_csv(table))
            winrates.draw(wins, results_dir / winrates.FIGURE, spec["title"], note)
        atomic_write_text(stamp, key + "\n")
    Cache(cache_dir).record("plot", key, "computed", time.perf_counter() - start)
    print(f"[plot] wrote {len(outputs)} files to {results_dir}")
    return outputs[0]


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
