"""Summarise a run table as Markdown: the reward-vs-KL frontier of each series, the area under
it, the best reward within KL budgets, ODPO against its reference at matched settings and the
spread over seeds. ``python -m pipeline.report.digest results/<experiment> [--title TITLE]`` writes
``results/<experiment>/summary.md`` from its ``runs.csv``.

Higher reward (or lower, for a task such as toxicity: ``higher_is_better=False``) and lower
KL are better throughout; the table's metric column may be named for its task. A *series* is DPO, or one ODPO variant
(scaling function f, scale α); its runs at one training-set size form one frontier."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.infra.cache import atomic_write_text
from pipeline.math.frontier import best_within, frontier_area, pareto_frontier
from pipeline.report.markdown import integer, markdown_table, num, provenance
from pipeline.report.runs import as_reward, describe_fingerprint, read, read_fingerprint

MATCH = ["beta", "n_pairs", "seed"]  # what "the same setting" means in the head-to-head
SPREAD_KEYS = ["loss", "offset", "alpha", "n_pairs", "beta"]


def training_runs(runs: pd.DataFrame, kl_column: str = "kl") -> pd.DataFrame:
    """The rows that are not the SFT baseline, with numeric sweep columns, beta rounded to 9
    decimals (so 0.3 from two sources is one value) and the offset of DPO rows spelled "none"."""
    if kl_column not in runs.columns:
        raise ValueError(f"kl_column: no column {kl_column!r} in the run table")
    trained = runs[runs["loss"] != "sft"].copy()
    for col in ("beta", "alpha", "n_pairs", "seed", "reward", kl_column):
        trained[col] = pd.to_numeric(trained[col], errors="coerce").astype(float)
    trained["beta"] = trained["beta"].round(9)
    trained["offset"] = trained["offset"].astype(object).where(trained["offset"].notna(), "none")
    return trained.reset_index(drop=True)


def series_label(loss: str, offset: str, alpha: float) -> str:
    """ "DPO", or "ODPO (f=<offset>, α=<alpha>)" for an ODPO variant."""
    if loss == "dpo":
        return "DPO"
    if loss == "odpo":
        return f"ODPO (f={offset}, α={alpha:g})"
    return str(loss)


def _series_order(loss: str, offset: str, alpha: float) -> tuple:
    return ({"dpo": 0, "odpo": 1}.get(loss, 2), str(loss), str(offset), float(alpha))


def _with_series(df: pd.DataFrame) -> pd.DataFrame:
    """Add the series label and a sort key (DPO first, then ODPO by f and α)."""
    keys = list(zip(df["loss"], df["offset"], df["alpha"], strict=True))
    return df.assign(
        series=[series_label(*key) for key in keys], order=[_series_order(*key) for key in keys]
    )


def _matched(variant: pd.DataFrame, reference: pd.DataFrame, kl_column: str) -> pd.DataFrame:
    """Inner join of two sets of training runs on (beta, n_pairs, seed)."""

    def keyed(df: pd.DataFrame) -> pd.DataFrame:
        return df[MATCH + ["reward", kl_column]].rename(columns={kl_column: "kl_value"})

    ref = keyed(reference)
    if ref.duplicated(MATCH).any():
        raise ValueError("reference runs are not unique per (beta, n_pairs, seed)")
    return keyed(variant).merge(ref, on=MATCH, suffixes=("_odpo", "_ref"))


def head_to_head(
    runs: pd.DataFrame, kl_column: str = "kl", higher_is_better: bool = True
) -> pd.DataFrame:
    """ODPO against its reference at matched (beta, n_pairs, seed), one row per ODPO variant.

    The reference is the DPO runs when the table has any ("DPO"); otherwise, for an ODPO
    variant with offset f, the ODPO runs with offset f and alpha == 0, which is DPO exactly
    ("DPO (α = 0)"); those alpha == 0 runs are then not compared with themselves. A variant with
    no reference runs at all gets no row.

    Columns: series, reference, offset, alpha; ``matched``: pairs of runs with equal
    (beta, n_pairs, seed); ``odpo_better``: pairs with a better reward (reward_odpo > reward_ref,
    or < when lower is better);
    ``odpo_lower_kl``: pairs with kl_odpo < kl_ref; ``odpo_dominates``: pairs with
    reward_odpo >= reward_ref and kl_odpo <= kl_ref, at least one strict (Pareto dominance,
    as in :func:`pareto_frontier`); ``reference_dominates``: the same with the roles swapped.
    Pairs with a NaN reward or KL count as matched but in none of the other columns.
    """
    trained = training_runs(runs, kl_column)
    dpo = trained[trained["loss"] == "dpo"]
    odpo = trained[trained["loss"] == "odpo"]
    rows = []
    for (offset, alpha), variant in odpo.groupby(["offset", "alpha"], sort=True):
        if len(dpo):
            reference, label = dpo, "DPO"
        else:
            if alpha == 0:
                continue
            reference = odpo[(odpo["offset"] == offset) & (odpo["alpha"] == 0)]
            label = "DPO (α = 0)"
            if reference.empty:
                continue
        pairs = _matched(variant, reference, kl_column)
        sign = 1.0 if higher_is_better else -1.0  # compare "better", whichever way it points
        r_o, r_d = sign * pairs["reward_odpo"], sign * pairs["reward_ref"]
        k_o, k_d = pairs["kl_value_odpo"], pairs["kl_value_ref"]
        odpo_dominates = (r_o >= r_d) & (k_o <= k_d) & ((r_o > r_d) | (k_o < k_d))
        ref_dominates = (r_d >= r_o) & (k_d <= k_o) & ((r_d > r_o) | (k_d < k_o))
        rows.append(
            {
                "series": series_label("odpo", offset, alpha),
                "reference": label,
                "offset": offset,
                "alpha": alpha,
                "matched": len(pairs),
                "odpo_better": int((r_o > r_d).sum()),
                "odpo_lower_kl": int((k_o < k_d).sum()),
                "odpo_dominates": int(odpo_dominates.sum()),
                "reference_dominates": int(ref_dominates.sum()),
            }
        )
    columns = [
        "series",
        "reference",
        "offset",
        "alpha",
        "matched",
        "odpo_better",
        "odpo_lower_kl",
        "odpo_dominates",
        "reference_dominates",
    ]
    return pd.DataFrame(rows, columns=columns)


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
    s = 1.0 if higher_is_better else -1.0  # frontiers and areas on s * metric: higher is better
    m, hi, highest, ge, high, less = (metric, "higher", "highest", "≥", "high", "less")
    if not higher_is_better:
        hi, highest, ge, high, less = ("lower", "lowest", "≤", "low", "more")
    trained = training_runs(runs, kl_column)
    sft = runs[runs["loss"] == "sft"]
    floor = float(sft["reward"].iloc[0]) if len(sft) else float("nan")

    out = [f"# {title}", "", provenance(runs), "", *describe_fingerprint(fingerprint)]
    if len(sft):
        out.append(
            f"SFT baseline: {m} {num(floor)} ± {num(float(sft['reward_se'].iloc[0]))} at KL 0."
        )
    else:
        out.append("No SFT baseline in the table, so no area under the frontier.")
    out.append("")
    if trained.empty:
        out += ["No training runs in the table yet.", ""]
        return "\n".join(out)
    out += [
        f"{len(trained)} training runs. KL is the `{kl_column}` column; {hi} {m} and "
        "lower KL are better.",
        "",
    ]

    # One group per (n_pairs, series), series in the order DPO, then ODPO by (f, α).
    trained = _with_series(trained)
    groups = sorted(
        trained.groupby(["n_pairs", "series"], dropna=False),
        key=lambda item: (item[0][0], item[1]["order"].iloc[0]),
    )

    b = f"{area_budget:g}"
    area_text = (
        f"the SFT {m} {num(floor)} (what KL 0 gives), so a row that never beats SFT scores "
        f"{b} × {num(floor)} = {num(area_budget * floor)}"
        if np.isfinite(floor)
        else f"the SFT {m}, which this table lacks (–)"
    )
    out += [
        "## Frontier per series",
        "",
        "One row per training-set size and series. *Frontier points*: runs that no other run "
        f"of the row dominates (no other run has KL ≤ and {m} {ge}, one of them strict; exact "
        f"duplicates count once). *Area (KL ≤ {b})*: the integral of R(x) over 0 ≤ x ≤ {b}, "
        f"where R(x) is the {highest} {m} of the row's runs with KL ≤ x and never {less} than "
        f"{area_text}{'' if higher_is_better else '; a smaller area is better'}. *Best (KL ≤ b)*: "
        f"the {highest} {m} of a run with KL ≤ b (– if none).",
        "",
    ]
    header = ["n_pairs", "series", "runs", "frontier points", f"area (KL ≤ {b})"]
    header += [f"best (KL ≤ {budget:g})" for budget in kl_budgets]
    rows, frontiers = [], []
    for (n_pairs, series), group in groups:
        kl, reward = group[kl_column].to_numpy(), group["reward"].to_numpy()
        idx = pareto_frontier(kl, s * reward)
        frontiers.append((n_pairs, series, group.iloc[idx]))
        area = (
            s * frontier_area(kl, s * reward, area_budget, s * floor)
            if np.isfinite(floor)
            else np.nan
        )
        rows.append(
            [integer(n_pairs), series, str(len(group)), str(len(idx)), num(area)]
            + [num(s * best_within(kl, s * reward, budget)) for budget in kl_budgets]
        )
    out += [markdown_table(header, rows, right=len(header) - 2), ""]

    out += ["## Frontier points", "", "Each row's frontier, by increasing KL.", ""]
    for n_pairs, series, points in frontiers:
        point_rows = [
            [f"{beta:g}", integer(seed), num(kl), num(reward)]
            for beta, seed, kl, reward in zip(
                points["beta"], points["seed"], points[kl_column], points["reward"], strict=True
            )
        ]
        out += [
            f"### {series}, n_pairs = {integer(n_pairs)}",
            "",
            markdown_table(["β", "seed", "KL", m], point_rows, right=4),
            "",
        ]

    duel = head_to_head(runs, kl_column, higher_is_better)
    out += [
        "## ODPO against its reference at matched β, n_pairs and seed",
        "",
        f"Counts of pairs of runs. *{hi.capitalize()} {m}* and *lower KL* are strict; *dominates*: "
        f"at least as {high} a {m} and at most as large a KL, one of the two strict. A pair where "
        f"neither dominates trades {m} for KL.",
        "",
    ]
    if duel.empty:
        out += ["No ODPO run has a reference run in this table.", ""]
    else:
        duel_rows = [
            [
                row.series,
                row.reference,
                str(row.matched),
                str(row.odpo_better),
                str(row.odpo_lower_kl),
                str(row.odpo_dominates),
                str(row.reference_dominates),
            ]
            for row in duel.itertuples()
        ]
        duel_header = [
            "series",
            "reference",
            "matched pairs",
            f"ODPO {hi} {m}",
            "ODPO lower KL",
            "ODPO dominates",
            "reference dominates",
        ]
        out += [markdown_table(duel_header, duel_rows, right=5), ""]

    spread = seed_spread(runs, kl_column)
    spread = _with_series(spread).sort_values(["order", "n_pairs", "beta"], kind="stable")
    spread_rows = [
        [
            row.series,
            integer(row.n_pairs),
            f"{row.beta:g}",
            str(row.seeds),
            f"{num(row.reward_mean)} [{num(row.reward_min)}, {num(row.reward_max)}]",
            f"{num(row.kl_mean)} [{num(row.kl_min)}, {num(row.kl_max)}]",
        ]
        for row in spread.itertuples()
    ]
    out += [
        "## Spread over seeds",
        "",
        "Mean [min, max] over the seeds of each setting.",
        "",
        markdown_table(["series", "n_pairs", "β", "seeds", m, "KL"], spread_rows, right=4),
        "",
    ]
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
    from pipeline.orchestration.callbacks import SPEC, read_spec

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
