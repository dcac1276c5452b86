"""Summarise a run table as Markdown: the reward-vs-KL frontier of each series, the area under
it, the best reward within KL budgets, each series against the baseline (DPO) at matched
settings and the spread over seeds. ``python -m pipeline.report.digest results/<experiment>
[--title TITLE]`` writes ``results/<experiment>/summary.md`` from its ``runs.csv``.

Higher reward (or lower, for a task such as toxicity: ``higher_is_better=False``) and lower
KL are better throughout; the table's metric column may be named for its task. A *series*
is a loss without an offset, or one variant (scaling function f, scale α) of a loss with
one, read from the table's ``loss`` column (``pipeline.report.variants``); its runs at one
training-set size form one frontier. The sections' text is in ``pipeline.report.sections``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.infra.cache import atomic_write_text
from pipeline.math.frontier import best_within, frontier_area, pareto_frontier
from pipeline.report import sections
from pipeline.report.markdown import num, provenance
from pipeline.report.runs import as_reward, describe_fingerprint, read, read_fingerprint
from pipeline.report.variants import BASELINE, SFT, display, others, takes_offset, with_series

# The frontier functions are part of this module's interface (summary.md is made of them).
__all__ = ["best_within", "frontier_area", "head_to_head", "main", "pareto_frontier",
           "render_summary", "seed_spread", "training_runs", "write_summary"]  # fmt: skip

MATCH = ["beta", "n_pairs", "seed"]  # what "the same setting" means in the head-to-head
SPREAD_KEYS = ["loss", "offset", "alpha", "n_pairs", "beta"]
DUEL_COLUMNS = ["series", "loss", "reference", "offset", "alpha", "matched", "odpo_better",
                "odpo_lower_kl", "odpo_dominates", "reference_dominates"]  # fmt: skip


def training_runs(runs: pd.DataFrame, kl_column: str = "kl") -> pd.DataFrame:
    """The rows that are not the SFT baseline, with numeric sweep columns, beta rounded to 9
    decimals (so 0.3 from two sources is one value) and a missing offset spelled "none" (the
    rows of a loss without an offset)."""
    if kl_column not in runs.columns:
        raise ValueError(f"kl_column: no column {kl_column!r} in the run table")
    trained = runs[runs["loss"] != SFT].copy()
    for col in ("beta", "alpha", "n_pairs", "seed", "reward", kl_column):
        trained[col] = pd.to_numeric(trained[col], errors="coerce").astype(float)
    trained["beta"] = trained["beta"].round(9)
    trained["offset"] = trained["offset"].astype(object).where(trained["offset"].notna(), "none")
    return trained.reset_index(drop=True)


def _matched(variant: pd.DataFrame, reference: pd.DataFrame, kl_column: str) -> pd.DataFrame:
    """Inner join of two sets of training runs on (beta, n_pairs, seed)."""

    def keyed(df: pd.DataFrame) -> pd.DataFrame:
        return df[MATCH + ["reward", kl_column]].rename(columns={kl_column: "kl_value"})

    ref = keyed(reference)
    if ref.duplicated(MATCH).any():
        raise ValueError("reference runs are not unique per (beta, n_pairs, seed)")
    return keyed(variant).merge(ref, on=MATCH, suffixes=("_var", "_ref"))


def _reference(trained: pd.DataFrame, variant: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs a series is compared with and their label: the baseline's runs when the
    table has any; otherwise, for a variant of a loss with an offset and alpha != 0, the
    same loss and offset at alpha == 0, which is the loss without its offset (for ODPO,
    DPO exactly: "DPO (α = 0)"). No reference: an empty frame."""
    base = trained[trained["loss"] == BASELINE]
    if len(base):
        return base, display(BASELINE)
    loss, offset, alpha = variant[["loss", "offset", "alpha"]].iloc[0]
    if alpha == 0 or not takes_offset(loss, variant["offset"]):
        return trained.iloc[:0], ""
    same = (trained["loss"] == loss) & (trained["offset"] == offset) & (trained["alpha"] == 0)
    return trained[same], f"{display(BASELINE)} (α = 0)"


def _dominates(reward_a: pd.Series, kl_a: pd.Series, reward_b: pd.Series, kl_b: pd.Series) -> int:
    """Pairs where a is at least as good as b in both (higher reward, lower KL), one strict."""
    better = (reward_a > reward_b) | (kl_a < kl_b)
    return int(((reward_a >= reward_b) & (kl_a <= kl_b) & better).sum())


def head_to_head(
    runs: pd.DataFrame, kl_column: str = "kl", higher_is_better: bool = True
) -> pd.DataFrame:
    """Every series but the baseline's against its reference at matched (beta, n_pairs,
    seed), one row per series, in series order.

    The reference is the baseline's (DPO's) runs when the table has any ("DPO"); otherwise,
    for a variant of a loss with an offset f, the same loss with offset f and alpha == 0
    ("DPO (α = 0)"); those alpha == 0 runs are then not compared with themselves. A series
    with no reference runs at all gets no row.

    Columns: series, loss, reference, offset, alpha; ``matched``: pairs of runs with equal
    (beta, n_pairs, seed); ``odpo_better``: pairs where the series has a better reward
    (reward_variant > reward_ref, or < when lower is better); ``odpo_lower_kl``: pairs with
    kl_variant < kl_ref; ``odpo_dominates``: pairs with reward_variant >= reward_ref and
    kl_variant <= kl_ref, at least one strict (Pareto dominance, as in
    :func:`pareto_frontier`); ``reference_dominates``: the same with the roles swapped. (The
    count columns keep the names they had when ODPO was the only series compared.) Pairs
    with a NaN reward or KL count as matched but in none of the other columns.
    """
    trained = with_series(training_runs(runs, kl_column))
    rows = []
    sign = 1.0 if higher_is_better else -1.0  # compare "better", whichever way it points
    groups = trained[trained["loss"] != BASELINE].groupby("series", sort=False)
    for series, variant in sorted(groups, key=lambda item: item[1]["order"].iloc[0]):
        reference, label = _reference(trained, variant)
        if reference.empty:
            continue
        pairs = _matched(variant, reference, kl_column)
        r_v, r_r = sign * pairs["reward_var"], sign * pairs["reward_ref"]
        k_v, k_r = pairs["kl_value_var"], pairs["kl_value_ref"]
        first = variant.iloc[0]
        rows.append(
            {
                "series": series,
                "loss": first["loss"],
                "reference": label,
                "offset": first["offset"],
                "alpha": first["alpha"],
                "matched": len(pairs),
                "odpo_better": int((r_v > r_r).sum()),
                "odpo_lower_kl": int((k_v < k_r).sum()),
                "odpo_dominates": _dominates(r_v, k_v, r_r, k_r),
                "reference_dominates": _dominates(r_r, k_r, r_v, k_v),
            }
        )
    return pd.DataFrame(rows, columns=DUEL_COLUMNS)


def seed_spread(runs: pd.DataFrame, kl_column: str = "kl") -> pd.DataFrame:
    """Per (loss, offset, alpha, n_pairs, beta) over the seeds run there: ``seeds`` (number of
    distinct seeds), mean, min and max of reward and of KL (``kl_column``). NaNs are skipped.
    The SFT baseline is left out. Rows sorted by the grouping columns."""
    trained = training_runs(runs, kl_column)
    spread = trained.groupby(SPREAD_KEYS, sort=True).agg(
        seeds=("seed", "nunique"),
        reward_mean=("reward", "mean"),
        reward_min=("reward", "min"),
        reward_max=("reward", "max"),
        kl_mean=(kl_column, "mean"),
        kl_min=(kl_column, "min"),
        kl_max=(kl_column, "max"),
    )
    return spread.reset_index()


def render_summary(
    runs: pd.DataFrame,
    title: str,
    kl_budgets: Sequence[float] = (0.5, 1.0, 2.0),
    area_budget: float = 2.0,
    kl_column: str = "kl",
    fingerprint: dict | None = None,
    metric: str = "reward",
    higher_is_better: bool = True,
) -> str:
    """The text of summary.md for a run table (see :func:`write_summary`). ``metric``: the
    task's result column; ``higher_is_better``: its direction."""
    if not (np.isfinite(area_budget) and area_budget > 0):
        raise ValueError(f"area_budget must be a finite number > 0, got {area_budget}")
    runs = as_reward(runs, metric)
    words = sections.Words.of(metric, higher_is_better)
    trained = training_runs(runs, kl_column)
    sft = runs[runs["loss"] == SFT]
    floor = float(sft["reward"].iloc[0]) if len(sft) else float("nan")

    out = [f"# {title}", "", provenance(runs), "", *describe_fingerprint(fingerprint)]
    if len(sft):
        se = num(float(sft["reward_se"].iloc[0]))
        out.append(f"SFT baseline: {metric} {num(floor)} ± {se} at KL 0.")
    else:
        out.append("No SFT baseline in the table, so no area under the frontier.")
    out.append("")
    if trained.empty:
        out += ["No training runs in the table yet.", ""]
        return "\n".join(out)
    out += [
        f"{len(trained)} training runs. KL is the `{kl_column}` column; {words.hi} {metric} and "
        "lower KL are better.",
        "",
    ]
    out += sections.frontiers(
        with_series(trained), kl_column, kl_budgets, area_budget, floor, words
    )
    duel = head_to_head(runs, kl_column, higher_is_better)
    out += sections.duel(duel, others(trained["loss"]), words)
    spread = seed_spread(runs, kl_column)
    spread = with_series(spread).sort_values(["order", "n_pairs", "beta"], kind="stable")
    out += sections.spread(spread, words)
    return "\n".join(out)


def write_summary(
    table: Path,
    out: Path,
    title: str,
    kl_budgets: Sequence[float] = (0.5, 1.0, 2.0),
    area_budget: float = 2.0,
    kl_column: str = "kl",
    metric: str = "reward",
    higher_is_better: bool = True,
) -> Path:
    """Write the Markdown summary of the run table ``table`` atomically and return its path.

    ``out`` is the file to write, or a directory (an existing one, or a path without a
    suffix) to write ``summary.md`` into. The text depends only on the table (and the win
    rates of a judged task beside it, ``win_rates.csv``) and the arguments, with
    fixed-point numbers, so the same tables give the same bytes.
    """
    from pipeline.report import winrates

    path = Path(out)
    if path.is_dir() or path.suffix == "":
        path = path / "summary.md"
    fingerprint = read_fingerprint(Path(table).parent)
    text = render_summary(
        read(Path(table)), title, kl_budgets, area_budget, kl_column, fingerprint, metric,
        higher_is_better,
    )  # fmt: skip
    wins = Path(table).parent / winrates.FILE
    if wins.is_file():
        text = text.rstrip("\n") + "\n\n" + "\n".join(winrates.summary_section(wins))
    atomic_write_text(path, text)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.report.digest",
        description="Write <results_dir>/summary.md from <results_dir>/runs.csv.",
    )
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--title", default=None, help="heading (default: the folder name)")
    args = parser.parse_args(argv)
    table = args.results_dir / "runs.csv"
    if not table.is_file():
        print(f"results_dir: no runs.csv in {args.results_dir}", file=sys.stderr)
        return 2
    from pipeline import tasks
    from pipeline.report.spec import SPEC, read_spec

    spec = read_spec(args.results_dir)  # the folder's figures.json: its task and title
    task = tasks.by_name(spec["task"])
    named = (args.results_dir / SPEC).is_file()
    title = args.title or (spec["title"] if named else args.results_dir.resolve().name)
    path = write_summary(
        table, args.results_dir / "summary.md", title, metric=task.metric,
        higher_is_better=task.higher_is_better,
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
