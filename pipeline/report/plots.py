"""Stage 9, plot: the paper's figures from a run table.

- ``reward_vs_kl``: the task's metric (y: eval reward, or toxicity) against KL to the SFT
  model (x), one panel per training-set size, one colour and marker per series (each loss
  without an offset, each (loss, f, α) of a loss with one: ``pipeline.report.variants``).
  Faint markers are single runs; solid markers are the mean over seeds with bars spanning
  the seeds' range; the line is each series' Pareto frontier. Up and to the left is better
  (down and to the left when lower is better). Files: <metric>_vs_kl*.png.
- ``vs_alpha``: the metric and KL against the offset scale alpha (the alpha ablation), one
  line per (loss, f) of a loss with an offset; each loss without one is a horizontal line.

Labels, the metric column and its direction come from the task (``pipeline.tasks``).
"""

from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.report import runs as results
from pipeline.report import variants
from pipeline.report.variants import BASE_STYLE, STYLES
from pipeline.tasks.base import Task  # noqa: E402

KL_LABEL = {
    "kl": "KL(π_θ ‖ π_SFT) (k3)",
    "kl_exact": "KL(π_θ ‖ π_SFT) (exact per-token)",
    "kl_with_prompt": "k3 over prompt + response tokens (the authors' KL axis)",
}


def series(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str, str]]:
    """(label, rows, colour, marker) per series of the table, in series order: the
    baseline in its colour, then each other series in the next of ``STYLES``. A loss with an
    offset that has one variant here is labelled by its name alone."""
    out = []
    base = runs[runs["loss"] == variants.BASELINE]
    if len(base):
        out.append((variants.display(variants.BASELINE), base, *BASE_STYLE))
    parts = []
    for loss in variants.others(runs["loss"]):
        rows = runs[runs["loss"] == loss]
        if not variants.takes_offset(loss, rows["offset"]):
            parts.append((variants.display(loss), rows))
            continue
        keys = sorted(rows.groupby(["offset", "alpha"]).groups)
        for offset, alpha in keys:
            part = rows[(rows["offset"] == offset) & (rows["alpha"] == alpha)]
            parts.append((variants.series_label(loss, offset, alpha, len(keys) == 1), part))
    for i, (label, part) in enumerate(parts):
        out.append((label, part, *STYLES[i % len(STYLES)]))
    return out


def _split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training runs, SFT baseline rows, the whole table: what says how it was made)."""
    return df[df["loss"] != "sft"], df[df["loss"] == "sft"], df


def _title(fig: plt.Figure, text: str) -> None:
    """A suptitle wrapped to the figure's width (a one-panel figure is narrow)."""
    chars = int(fig.get_figwidth() * 15)  # ~15 characters per inch at fontsize 9
    fig.suptitle(textwrap.fill(text, chars), fontsize=9)


def _save(fig: plt.Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in (out, out.with_suffix(".pdf")):
        # A unique temporary name, then rename: a killed or concurrent run never
        # leaves (or reads) half a figure.
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
        # No creation date in the PDF: the same table gives the same bytes.
        fig.savefig(
            tmp, dpi=130, metadata={"CreationDate": None} if path.suffix == ".pdf" else None
        )
        os.replace(tmp, path)
    plt.close(fig)
    return out


def stand_in_note(task: Task, df: pd.DataFrame) -> str:
    """The title's note on a stand-in table (else ""): the task's note, or for a model
    file's model (the ``base_model`` column) that model with the stand-in data."""
    flags = df.get("stand_in", pd.Series([False])).astype(str).str.lower().eq("true")
    if not flags.any():
        return ""
    models = sorted({str(m) for m in df.get("base_model", pd.Series(dtype=object)).dropna()})
    models = [m for m in models if m != "embedded"]
    if models:
        return f" (model {', '.join(models)}; stand-in data and scorer, not the paper's)"
    return f" ({task.stand_in_note})"


def _stand_in(task: Task, df: pd.DataFrame) -> str:
    return stand_in_note(task, df)


def reward_vs_kl(
    table: Path, out: Path, kl_column: str = "kl", title: str = "Sentiment control",
    task: Task | None = None,
) -> Path:  # fmt: skip
    from pipeline.math.frontier import pareto_frontier

    task = task or Task()  # the defaults: a "reward" column, higher is better
    sign = 1.0 if task.higher_is_better else -1.0
    runs, sft, stand_in = _split(results.as_reward(results.read(table), task.metric))
    sizes = sorted(runs["n_pairs"].dropna().unique()) or [None]
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(max(4.4 * len(sizes), 6.5), 4.4), sharey=True, squeeze=False
    )
    for ax, size in zip(axes[0], sizes, strict=True):
        panel = runs if size is None else runs[runs["n_pairs"] == size]
        for label, part, color, marker in series(panel):
            ax.scatter(
                part[kl_column], part["reward"], c=color, marker=marker, s=14, alpha=0.3,
                edgecolors="none",
            )  # fmt: skip
            by_beta = part.groupby("beta")
            mean = by_beta[[kl_column, "reward"]].mean()
            lo, hi = by_beta[[kl_column, "reward"]].min(), by_beta[[kl_column, "reward"]].max()
            ax.errorbar(
                mean[kl_column],
                mean["reward"],
                xerr=[mean[kl_column] - lo[kl_column], hi[kl_column] - mean[kl_column]],
                yerr=[mean["reward"] - lo["reward"], hi["reward"] - mean["reward"]],
                fmt=marker, color=color, ms=5, elinewidth=0.8, capsize=0, alpha=0.9,
                label=f"{label} (seed mean, range)",
            )  # fmt: skip
            front = part.iloc[
                pareto_frontier(part[kl_column].to_numpy(), sign * part["reward"].to_numpy())
            ]
            ax.step(front[kl_column], front["reward"], where="post", color=color, lw=1.2)
        if len(sft):
            ax.axhline(float(sft["reward"].iloc[0]), color="gray", ls="--", lw=1, label="SFT")
            ax.plot([0], [float(sft["reward"].iloc[0])], marker="*", color="gray", ms=9)
        ax.set_xlabel(KL_LABEL[kl_column])
        ax.set_title(f"{int(size)} pairs" if size is not None else "all runs")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(task.metric_label)
    axes[0][0].legend(loc="lower right" if task.higher_is_better else "upper right", fontsize=7)
    _title(fig, title + _stand_in(task, stand_in))
    where = "up-left" if task.higher_is_better else "down-left (lower-left)"
    fig.text(0.99, 0.01, f"lines: Pareto frontier (non-dominated runs); {where} is better",
             ha="right", fontsize=7)  # fmt: skip
    fig.tight_layout()
    return _save(fig, out)


def _alpha_lines(runs: pd.DataFrame) -> tuple[list, list]:
    """What ``vs_alpha`` draws: (label, rows, colour, marker) per (loss, f) of a loss with
    an offset, lines against alpha; (label, rows, colour) per loss without one, flat lines
    at their mean (the baseline in its colour, the others in the next of ``STYLES``)."""
    lines, flat, i = [], [], 0
    for loss in variants.others(runs["loss"]):
        rows = runs[runs["loss"] == loss]
        if variants.takes_offset(loss, rows["offset"]):
            for offset, part in rows.groupby("offset"):
                name = f"{variants.display(loss)} (f={offset})"
                lines.append((name, part, *STYLES[i % len(STYLES)]))
                i += 1
    base = runs[runs["loss"] == variants.BASELINE]
    if len(base):
        flat.append((variants.display(variants.BASELINE), base, BASE_STYLE[0]))
    for loss in variants.others(runs["loss"]):
        rows = runs[runs["loss"] == loss]
        if not variants.takes_offset(loss, rows["offset"]):
            flat.append((variants.display(loss), rows, STYLES[i % len(STYLES)][0]))
            i += 1
    return lines, flat


def vs_alpha(
    table: Path, out: Path, kl_column: str = "kl", title: str = "α ablation",
    task: Task | None = None,
) -> Path:  # fmt: skip
    """Reward and KL against alpha: single seeds faint, seed mean with its range."""
    task = task or Task()  # the defaults: a "reward" column, higher is better
    runs, sft, stand_in = _split(results.as_reward(results.read(table), task.metric))
    lines, flat = _alpha_lines(runs)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), squeeze=False)
    for ax, column, label in (
        (axes[0][0], "reward", task.metric_label),
        (axes[0][1], kl_column, KL_LABEL[kl_column]),
    ):
        for name, part, color, marker in lines:
            ax.scatter(part["alpha"], part[column], c=color, marker=marker, s=14, alpha=0.35)
            by_alpha = part.groupby("alpha")[column]
            mean, lo, hi = by_alpha.mean(), by_alpha.min(), by_alpha.max()
            ax.plot(mean.index, mean.values, color=color, marker=marker, ms=5,
                    label=f"{name}, seed mean")  # fmt: skip
            ax.fill_between(mean.index, lo.values, hi.values, color=color, alpha=0.15,
                            label="range over seeds")  # fmt: skip
        for name, part, color in flat:
            ax.axhline(float(np.mean(part[column])), color=color, ls=":", lw=1,
                       label=f"{name} (seed mean)")  # fmt: skip
        if column == "reward" and len(sft):
            ax.axhline(float(sft["reward"].iloc[0]), color="gray", ls="--", lw=1, label="SFT")
        ax.set_xlabel(f"offset scale α  (α = 0 is {variants.display(variants.BASELINE)})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=7)
    _title(fig, title + _stand_in(task, stand_in))
    fig.tight_layout()
    return _save(fig, out)


# figure kind -> [(file name, KL column)], {metric} the task's; the drawing function by kind.
FIGURES = {
    "reward_vs_kl": [("{metric}_vs_kl.png", "kl"), ("{metric}_vs_kl_exact.png", "kl_exact")],
    "vs_alpha": [("vs_alpha.png", "kl"), ("vs_alpha_exact.png", "kl_exact")],
}
DRAW = {"reward_vs_kl": reward_vs_kl, "vs_alpha": vs_alpha}


def figure_files(kind: str, task: Task, with_prompt: bool = False) -> list[tuple[str, str]]:
    """(file name, KL column) of each figure a kind draws for a task; ``with_prompt``: the
    table has ``kl_with_prompt`` (eval.protocol=authors), drawn against it too."""
    files = [(name.format(metric=task.metric), column) for name, column in FIGURES[kind]]
    if with_prompt:
        name = FIGURES[kind][0][0].replace(".png", "_with_prompt.png")
        files.append((name.format(metric=task.metric), "kl_with_prompt"))
    return files


def has_kl_with_prompt(table: Path) -> bool:
    """Whether a run table reports ``kl_with_prompt`` (for any row)."""
    df = pd.read_csv(table)
    return "kl_with_prompt" in df.columns and bool(df["kl_with_prompt"].notna().any())


def draw(kind: str, table: Path, out: Path, kl_column: str, title: str, task: Task) -> Path:
    return DRAW[kind](table, out, kl_column=kl_column, title=title, task=task)
