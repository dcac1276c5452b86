"""The sections of ``summary.md`` (``pipeline.report.digest``): the frontier of each series
and its points, each series against the baseline at matched settings, and the spread over
seeds. Each takes the tables ``digest`` computed and returns Markdown lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.math.frontier import best_within, frontier_area, pareto_frontier
from pipeline.report.markdown import integer, markdown_table, num
from pipeline.report.variants import display


@dataclass(frozen=True)
class Words:
    """How the text speaks of the metric ``m``: its direction, and ``s``, the sign that makes
    higher better (frontiers and areas are computed on s * metric)."""

    m: str
    s: float
    hi: str
    highest: str
    ge: str
    high: str
    less: str

    @classmethod
    def of(cls, metric: str, higher_is_better: bool) -> Words:
        if higher_is_better:
            return cls(metric, 1.0, "higher", "highest", "≥", "high", "less")
        return cls(metric, -1.0, "lower", "lowest", "≤", "low", "more")


def frontiers(
    trained: pd.DataFrame,
    kl_column: str,
    kl_budgets: Sequence[float],
    area_budget: float,
    floor: float,
    w: Words,
) -> list[str]:
    """ "Frontier per series" and "Frontier points": one row, and one table of points, per
    (n_pairs, series) of ``trained`` (training runs with ``series`` and ``order`` columns)."""
    groups = sorted(
        trained.groupby(["n_pairs", "series"], dropna=False),
        key=lambda item: (item[0][0], item[1]["order"].iloc[0]),
    )
    b, m = f"{area_budget:g}", w.m
    area_text = (
        f"the SFT {m} {num(floor)} (what KL 0 gives), so a row that never beats SFT scores "
        f"{b} × {num(floor)} = {num(area_budget * floor)}"
        if np.isfinite(floor)
        else f"the SFT {m}, which this table lacks (–)"
    )
    out = [
        "## Frontier per series",
        "",
        "One row per training-set size and series. *Frontier points*: runs that no other run "
        f"of the row dominates (no other run has KL ≤ and {m} {w.ge}, one of them strict; exact "
        f"duplicates count once). *Area (KL ≤ {b})*: the integral of R(x) over 0 ≤ x ≤ {b}, "
        f"where R(x) is the {w.highest} {m} of the row's runs with KL ≤ x and never {w.less} "
        f"than {area_text}{'' if w.s > 0 else '; a smaller area is better'}. *Best (KL ≤ b)*: "
        f"the {w.highest} {m} of a run with KL ≤ b (– if none).",
        "",
    ]
    header = ["n_pairs", "series", "runs", "frontier points", f"area (KL ≤ {b})"]
    header += [f"best (KL ≤ {budget:g})" for budget in kl_budgets]
    rows, points = [], []
    s = w.s
    for (n_pairs, series), group in groups:
        kl, reward = group[kl_column].to_numpy(), group["reward"].to_numpy()
        idx = pareto_frontier(kl, s * reward)
        points.append((n_pairs, series, group.iloc[idx]))
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
    for n_pairs, series, front in points:
        point_rows = [
            [f"{beta:g}", integer(seed), num(kl), num(reward)]
            for beta, seed, kl, reward in zip(
                front["beta"], front["seed"], front[kl_column], front["reward"], strict=True
            )
        ]
        out += [
            f"### {series}, n_pairs = {integer(n_pairs)}",
            "",
            markdown_table(["β", "seed", "KL", m], point_rows, right=4),
            "",
        ]
    return out


def duel(table: pd.DataFrame, losses: Sequence[str], w: Words) -> list[str]:
    """Each series against its reference (``digest.head_to_head``'s ``table``); ``losses``:
    the table's losses other than the baseline, whose names the text uses (one loss by its
    name, several as "variant")."""
    one = len(losses) == 1
    who = display(losses[0]) if one else "variant"
    m, hi = w.m, w.hi
    out = [
        f"## {who if one else 'Each variant'} against its reference at matched β, n_pairs and seed",
        "",
        f"Counts of pairs of runs. *{hi.capitalize()} {m}* and *lower KL* are strict; "
        f"*dominates*: at least as {w.high} a {m} and at most as large a KL, one of the two "
        f"strict. A pair where neither dominates trades {m} for KL.",
        "",
    ]
    if table.empty:
        return [*out, f"No {who} run has a reference run in this table.", ""]
    rows = [
        [
            row.series,
            row.reference,
            str(row.matched),
            str(row.odpo_better),
            str(row.odpo_lower_kl),
            str(row.odpo_dominates),
            str(row.reference_dominates),
        ]
        for row in table.itertuples()
    ]
    header = ["series", "reference", "matched pairs", f"{who} {hi} {m}", f"{who} lower KL",
              f"{who} dominates", "reference dominates"]  # fmt: skip
    return [*out, markdown_table(header, rows, right=5), ""]


def spread(table: pd.DataFrame, w: Words) -> list[str]:
    """ "Spread over seeds": ``digest.seed_spread``'s ``table`` with its ``series``, sorted."""
    rows = [
        [
            row.series,
            integer(row.n_pairs),
            f"{row.beta:g}",
            str(row.seeds),
            f"{num(row.reward_mean)} [{num(row.reward_min)}, {num(row.reward_max)}]",
            f"{num(row.kl_mean)} [{num(row.kl_min)}, {num(row.kl_max)}]",
        ]
        for row in table.itertuples()
    ]
    return [
        "## Spread over seeds",
        "",
        "Mean [min, max] over the seeds of each setting.",
        "",
        markdown_table(["series", "n_pairs", "β", "seeds", w.m, "KL"], rows, right=4),
        "",
    ]
