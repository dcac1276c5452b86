"""What the study (``pipeline.report.study``) shows of one loss against the baseline: its
figure, ``<loss>_vs_<baseline>.png`` (one row per setting: the mean difference in frontier
area with its bootstrap interval, and each seed's value), and its summary.md text."""

from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.report.markdown import markdown_table, num
from pipeline.report.variants import BASELINE, display, takes_offset


def figure_name(loss: str) -> str:
    """The figure's file name for the comparison of ``loss`` with the baseline."""
    return f"{loss}_vs_{BASELINE}.png"


def setting_label(row, with_offset: bool = True) -> str:
    """A setting as the figure and summary.md name it: its capacity, size and, for a loss
    with an offset, f and α."""
    label = f"{row.capacity}, {row.n_pairs} pairs"
    return label + (f", f={row.offset}, α={row.alpha:g}" if with_offset else "")


def draw(
    study: pd.DataFrame,
    per_seed: pd.DataFrame,
    out: Path,
    budget: float,
    loss: str,
    with_offset: bool = True,
) -> None:
    """One row per setting of ``loss``: the mean difference with its interval, each seed's
    value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, base = display(loss), display(BASELINE)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(study) + 1.6))
    ys = np.arange(len(study))[::-1]
    for y, row in zip(ys, study.itertuples(), strict=True):
        color = ("tab:green" if row.diff > 0 else "tab:red") if row.significant else "0.45"
        ax.plot([row.ci_low, row.ci_high], [y, y], color=color, lw=2.2)
        ax.plot(row.diff, y, "o", color=color, ms=6)
        same = (per_seed["capacity"] == row.capacity) & (per_seed["n_pairs"] == row.n_pairs)
        if with_offset:
            same &= (per_seed["offset"] == row.offset) & (per_seed["alpha"] == row.alpha)
        seeds = per_seed[same]
        ax.plot(seeds["diff"], [y - 0.22] * len(seeds), ".", color="k", ms=4, alpha=0.7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ys, [setting_label(r, with_offset) for r in study.itertuples()], fontsize=8)
    ax.set_xlabel(f"area under the reward-KL frontier (KL ≤ {budget:g}), {name} − {base}")
    ax.set_title(
        f"Does {name} beat {base}? (embedded stand-in, not the paper's models or data)\n"
        "circle: mean over seeds; bar: bootstrap 95% interval; dots: each seed;\n"
        f"green / red: the interval excludes 0 ({name} above / below {base})",
        fontsize=8,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(out)


def models_line(capacities: pd.Series) -> str:
    """What made the tables: the small GPT-2s trained here (capacities named by layers and
    width), or a model file's model by name (model=smollm2), with the stand-in data."""
    named = sorted({str(c) for c in capacities if "-layer" not in str(c)})
    if not named:
        return ("Embedded stand-in (small GPT-2s trained here, Rotten Tomatoes text, a TF-IDF "
                "classifier), not the paper's models or data. Produced by `make study`.")  # fmt: skip
    return (f"Model: {', '.join(named)} (a real pretrained model, see README), with the embedded "
            "stand-in data (Rotten Tomatoes text) and classifier (TF-IDF): not the paper's "
            "models or data.")  # fmt: skip


def render(
    study: pd.DataFrame, budget: float, n_boot: int, loss: str, per_seed: str = "per_seed.csv"
) -> str:
    """summary.md (or its part for ``loss``): the table of settings and what is and is not
    significant. ``per_seed``: the file with the per-seed areas."""
    v, b = display(loss), display(BASELINE)
    shifted = takes_offset(loss, study["offset"])
    up = study[study["significant"] & (study["diff"] > 0)]
    down = study[study["significant"] & (study["diff"] < 0)]
    header = ["setting", "seeds", f"area {b}", f"area {v}", f"{v} − {b}", "95% interval",
              "significant", "matched β×seed", f"{v} better", f"{v} dominates",
              f"{b} dominates"]  # fmt: skip
    rows = [
        [
            setting_label(r, shifted),
            str(r["seeds"]),
            num(r[f"area_{BASELINE}"]),
            num(r[f"area_{loss}"]),
            f"{r['diff']:+.4f}",
            f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
            if pd.notna(r["ci_low"])
            else f"none ({int(r['seeds'])} seed)",
            "yes" if r["significant"] else "no",
            str(r["matched"]),
            str(r[f"{loss}_better"]),
            str(r[f"{loss}_dominates"]),
            str(r[f"{BASELINE}_dominates"]),
        ]
        for r in (pd.Series(row) for row in study.to_dict("records"))
    ]
    lines = [
        f"# Study: when does {v} beat {b}?",
        "",
        models_line(study["capacity"]),
        "",
        f"Per setting: the area under the reward-vs-KL frontier for KL ≤ {budget:g} (floor: "
        f"the SFT reward), {v} minus {b}, averaged over seeds; the interval is a percentile "
        f"bootstrap over seeds ({n_boot} resamples). Each seed pairs the two losses on the same "
        "SFT model, sample set and pairs. *Matched β×seed*: runs of the two at the same β and "
        f"seed; *{v} better*: higher reward there; *dominates*: higher-or-equal reward at "
        "lower-or-equal KL, one strict.",
        "",
        markdown_table(header, rows, right=len(header) - 1),
        "",
        "## What is significant",
        "",
        f"{len(study)} settings; {v}'s frontier is significantly above {b}'s in {len(up)}, "
        f"significantly below in {len(down)}, and not distinguishable in "
        f"{len(study) - len(up) - len(down)}.",
        "",
    ]
    for label, part in (("Above", up), ("Below", down)):
        if len(part):
            named = "; ".join(setting_label(r, shifted) for r in part.itertuples())
            lines.append(f"- {label}: " + named)
    n = int(study["seeds"].min()) if len(study) else 0
    # n seeds resampled with replacement: C(2n - 1, n) distinct multisets, so as many means.
    lines += [
        "",
        f"With {n} seed{'s' * (n != 1)} a bootstrap interval is coarse ({comb(2 * n - 1, n) if n else 0} "
        "distinct resampled means) and tends to be too narrow; a setting called significant "
        f"here is a lead to check with more seeds, not a settled result. Per-seed areas: "
        f"`{per_seed}`.",
        "",
    ]
    return "\n".join(lines)
