"""Stage 9, plot: eval reward (y) against KL to the SFT model (x), DPO and ODPO
side by side, one panel per training-set size. Up and to the left is better."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline import results  # noqa: E402

DPO_STYLE = ("tab:blue", "o")
# ODPO variants (scaling function, alpha) each get their own colour and marker.
ODPO_STYLES = [
    ("tab:orange", "^"),
    ("tab:green", "s"),
    ("tab:red", "D"),
    ("tab:purple", "v"),
    ("tab:brown", "P"),
]


def series(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str, str]]:
    """(label, rows, colour, marker) for DPO and each ODPO variant in the table."""
    out = []
    dpo = runs[runs["loss"] == "dpo"]
    if len(dpo):
        out.append(("DPO", dpo, *DPO_STYLE))
    odpo = runs[runs["loss"] == "odpo"]
    variants = sorted(odpo.groupby(["offset", "alpha"]).groups)
    for i, (offset, alpha) in enumerate(variants):
        rows = odpo[(odpo["offset"] == offset) & (odpo["alpha"] == alpha)]
        label = "ODPO" if len(variants) == 1 else f"ODPO ({offset}, α={alpha:g})"
        out.append((label, rows, *ODPO_STYLES[i % len(ODPO_STYLES)]))
    return out


def reward_vs_kl(
    table: Path, out: Path, kl_column: str = "kl", title: str = "Sentiment control"
) -> Path:
    df = results.read(table)
    runs = df[df["loss"] != "sft"]
    sft = df[df["loss"] == "sft"]
    sizes = sorted(runs["n_pairs"].dropna().unique()) or [None]
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(4.2 * len(sizes), 3.8), sharey=True, squeeze=False
    )
    for ax, size in zip(axes[0], sizes, strict=True):
        panel = runs if size is None else runs[runs["n_pairs"] == size]
        for label, part, color, marker in series(panel):
            if len(part):
                ax.scatter(
                    part[kl_column],
                    part["reward"],
                    c=color,
                    marker=marker,
                    s=26,
                    alpha=0.8,
                    label=label,
                    edgecolors="none",
                )
        if len(sft):
            ax.axhline(float(sft["reward"].iloc[0]), color="gray", ls="--", lw=1, label="SFT")
        ax.set_xlabel(
            "KL(π_θ ‖ π_SFT)" + (" (exact per-token)" if kl_column == "kl_exact" else " (k3)")
        )
        ax.set_title(f"{int(size)} pairs" if size is not None else "all runs")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("eval reward  p(positive)")
    axes[0][0].legend(loc="lower right", fontsize=8)
    stand_in = bool(df.get("stand_in", pd.Series([False])).fillna(False).astype(bool).any())
    fig.suptitle(
        title
        + (
            " (embedded stand-in: small GPT-2 + Rotten Tomatoes, not the paper's models)"
            if stand_in
            else ""
        ),
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in (out, out.with_suffix(".pdf")):
        # Draw to a temporary name, then rename: a killed run never leaves half a figure.
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=130)
        os.replace(tmp, path)
    plt.close(fig)
    return out
