"""Win rates of a judged task (task=summarize): the table ``win_rates.csv`` beside
``runs.csv`` (one row per model, training run and sampling temperature), the figure
``win_rate_vs_temperature.png`` and a section of ``summary.md``.

Rows: ``model`` (the run's loss upper-cased: SFT, DPO, ODPO, ...), the run's ``loss, beta,
alpha, offset, seed`` (empty for SFT, which every run shares), ``temperature``, ``judge``,
``wins``, ``n`` (comparisons with a parsed answer), ``win_rate`` = wins / n and its Wilson 95%
interval ``ci_low, ci_high``, then ``unparseable``, ``ties``, the judge's ``calls``, ``cached``
answers and ``retries``.
The figure pools each model's seeds (wins and n summed) and draws the pooled win rate with
its Wilson interval as a band."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from pipeline.infra.cache import atomic_write_text
from pipeline.math.stats import wilson
from pipeline.report import variants
from pipeline.report.markdown import markdown_table

FILE = "win_rates.csv"
FIGURE = "win_rate_vs_temperature.png"
IDENTITY = ["model", "loss", "beta", "alpha", "offset", "seed", "temperature", "judge"]
COLUMNS = IDENTITY + ["wins", "n", "win_rate", "ci_low", "ci_high", "unparseable", "ties",
                      "calls", "cached", "retries"]  # fmt: skip
SFT_MODEL = variants.display(variants.SFT)
SFT_STYLE = ("0.35", "s")


def rank(model: str) -> int:
    """SFT first, then the baseline, then every other model (by name, after this key)."""
    if model == SFT_MODEL:
        return 0
    return 1 if model == variants.display(variants.BASELINE) else 2


def rows_for(run: dict, judge: str, win_rates: list[dict]) -> list[dict]:
    """One row per temperature for a run (``run``: its identity in runs.csv)."""
    model = variants.display(run["loss"])
    ident = {k: run.get(k) for k in ("loss", "beta", "alpha", "offset", "seed")}
    return [{"model": model, **ident, **w, "judge": judge} for w in win_rates]


def upsert(table: Path, rows: list[dict]) -> pd.DataFrame:
    """Insert rows, replacing earlier ones with the same identity (under a file lock)."""
    with FileLock(str(table) + ".lock"):
        old = pd.read_csv(table) if table.is_file() else pd.DataFrame(columns=COLUMNS)
        new = pd.DataFrame(rows).reindex(columns=COLUMNS)
        both = pd.concat([df for df in (old, new) if len(df)], ignore_index=True)
        key = pd.Series(
            ["|".join(_norm(v) for v in r) for r in both[IDENTITY].itertuples(index=False)],
            index=both.index,
        )
        both = both[~key.duplicated(keep="last")]
        order = both["model"].map(lambda m: f"{rank(m)}{m if rank(m) == 2 else ''}")
        both = both.assign(_o=order).sort_values(["_o", "beta", "alpha", "seed", "temperature"])
        atomic_write_text(table, both.drop(columns="_o").to_csv(index=False))
    return both


def _norm(value) -> str:
    """One spelling per identity value: a number read back from the CSV (0.0) and the
    same number from a run (0) compare equal, and a missing value is empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def pooled(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, loss, offset, alpha, beta, judge, temperature): seeds, wins and n summed
    over seeds, the pooled win rate and its Wilson interval."""
    df = table.copy()
    for col in ("beta", "alpha"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["offset"] = df["offset"].fillna("none")
    keys = ["model", "loss", "offset", "alpha", "beta", "judge", "temperature"]
    out = (
        df.groupby(keys, dropna=False, sort=True)
        .agg(seeds=("seed", "nunique"), wins=("wins", "sum"), n=("n", "sum"))
        .reset_index()
    )
    out["win_rate"] = out["wins"] / out["n"].where(out["n"] > 0)
    bounds = [wilson(int(w), int(n)) for w, n in zip(out["wins"], out["n"], strict=True)]
    out["ci_low"], out["ci_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    return out


def _series(pool: pd.DataFrame) -> list:
    """(key, rows) per model line, SFT first, then the baseline, then the others by name."""
    groups = pool.groupby(["model", "loss", "offset", "alpha", "beta", "judge"], dropna=False)
    return sorted(groups, key=lambda item: (rank(item[0][0]), str(item[0])))


def _label(row) -> str:
    if row.model == SFT_MODEL:
        return SFT_MODEL
    base = f"{row.model} β={row.beta:g}"
    shifted = variants.takes_offset(row.loss, [row.offset])
    return base + (f", f={row.offset}, α={row.alpha:g}" if shifted else "")


def _styles(pool: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """(colour, marker) per model: SFT grey, the baseline in its colour, every other model
    (by name) in the next of ``variants.STYLES``."""
    style = {SFT_MODEL: SFT_STYLE, variants.display(variants.BASELINE): variants.BASE_STYLE}
    rest = sorted({str(m) for m in pool["model"] if rank(str(m)) == 2})
    for i, model in enumerate(rest):
        style[model] = variants.STYLES[i % len(variants.STYLES)]
    return style


def draw(table: Path, out: Path, title: str, note: str) -> Path:
    """Win rate against the human summaries vs sampling temperature, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pool = pooled(pd.read_csv(table))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    style = _styles(pool)
    for _, part in _series(pool):
        part = part.sort_values("temperature")
        first = part.iloc[0]
        color, marker = style[first.model]
        seeds = f" ({int(part['seeds'].max())} seeds)" if first.model != SFT_MODEL else ""
        ax.plot(part["temperature"], part["win_rate"], color=color, marker=marker,
                label=_label(first) + seeds)  # fmt: skip
        ax.fill_between(part["temperature"], part["ci_low"], part["ci_high"], color=color,
                        alpha=0.15, lw=0)  # fmt: skip
    top = float(np.nanmax(pool["ci_high"])) if len(pool) else 1.0
    top = min(1.0, max(0.2, 1.15 * top))  # room for the bands; 0.5 shown when in range
    if top >= 0.5:
        ax.axhline(0.5, color="k", lw=0.7, ls=":")
    ax.set_xlabel("sampling temperature (0: greedy)")
    ax.set_ylabel("win rate against the human summary")
    ax.set_ylim(0, top)
    judges_used = ", ".join(sorted(pool["judge"].astype(str).unique()))
    text = f"{title}. Judge: {judges_used}; bands: Wilson 95% (seeds pooled){note}"
    ax.set_title("\n".join(textwrap.wrap(text, 90)), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(out)
    return out


def summary_section(table: Path) -> list[str]:
    """summary.md's win-rate section: the pooled table, and each model's best temperature."""
    raw = pd.read_csv(table)
    pool = pooled(raw)
    temps = sorted(pool["temperature"].unique())
    header = ["model", "judge", *[f"T={t:g}" for t in temps]]
    rows = []
    for _, part in _series(pool):
        by_t = dict(zip(part["temperature"], part.itertuples(), strict=True))
        cells = []
        for t in temps:
            r = by_t.get(t)
            cells.append(
                "–" if r is None or not np.isfinite(r.win_rate)
                else f"{r.win_rate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] ({int(r.wins)}/{int(r.n)})"
            )  # fmt: skip
        first = part.iloc[0]
        rows.append([_label(first), str(first.judge), *cells])
    calls, cached = int(raw["calls"].fillna(0).sum()), int(raw["cached"].fillna(0).sum())
    unparseable = int(raw["unparseable"].fillna(0).sum())
    return [
        "## Win rate against the human summaries",
        "",
        "Share of held-out prompts where the judge prefers the model's summary to the "
        "human-written one, seeds pooled (wins/n summed), with the Wilson 95% interval. "
        f"Per-run rows: `{FILE}`. Judge calls made: {calls}; answered from its cache: "
        f"{cached}; unparseable answers (left out of n): {unparseable}.",
        "",
        markdown_table(header, rows, right=len(header) - 2),
        "",
    ]
