"""Stage 9, plot: eval reward (y) against KL to the SFT model (x), DPO and ODPO
side by side, one panel per training-set size. Up and to the left is better."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline import results  # noqa: E402

STYLE = {"dpo": ("tab:blue", "o", "DPO"), "odpo": ("tab:orange", "^", "ODPO")}


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
        for loss, (color, marker, label) in STYLE.items():
            part = panel[panel["loss"] == loss]
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
    fig.savefig(out, dpi=130)
    fig.savefig(out.with_suffix(".pdf"))
    plt.close(fig)
    return out
