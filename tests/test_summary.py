"""Unit tests for pipeline.report.digest: the frontier, its area and the budgeted best reward on
hand-worked tables, checked again against brute force; the head-to-head counts; the seed spread;
and summary.md, on a small table and on the committed sentiment results."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import PROJECT_ROOT
from pipeline.report.digest import (
    best_within,
    frontier_area,
    head_to_head,
    main,
    pareto_frontier,
    seed_spread,
    write_summary,
)
from pipeline.report.runs import COLUMNS

SENTIMENT = PROJECT_ROOT / "results" / "sentiment" / "runs.csv"

# Six runs (index: kl, reward). 4 is beaten by 0, 2 by 1 (same KL, less reward), 3 by 1.
#   0: 0.5, 0.70   1: 1.0, 0.80   2: 1.0, 0.75   3: 2.0, 0.78   4: 0.8, 0.60   5: 3.0, 0.90
KL = [0.5, 1.0, 1.0, 2.0, 0.8, 3.0]
REWARD = [0.70, 0.80, 0.75, 0.78, 0.60, 0.90]


def test_frontier_indices_by_increasing_kl() -> None:
    assert pareto_frontier(KL, REWARD).tolist() == [0, 1, 5]


def test_frontier_keeps_one_of_exact_duplicates() -> None:
    # Runs 0 and 1 are the same point: the smaller index stays, whatever the input order.
    assert pareto_frontier([1.0, 1.0, 0.5], [0.8, 0.8, 0.7]).tolist() == [2, 0]
    assert pareto_frontier([0.5, 0.5], [0.7, 0.7]).tolist() == [0]


def test_frontier_skips_nan_and_handles_empty() -> None:
    assert pareto_frontier([0.5, np.nan, 1.0], [0.7, 0.99, np.nan]).tolist() == [0]
    assert pareto_frontier([], []).tolist() == []
    with pytest.raises(ValueError):
        pareto_frontier([0.1, 0.2], [0.5])


def test_frontier_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    # Coarse values so that ties in KL, in reward and exact duplicates all occur.
    kl = rng.integers(0, 8, size=60) / 4
    reward = rng.integers(0, 8, size=60) / 8
    expected = []
    for i in range(len(kl)):
        dominated = any(
            kl[j] <= kl[i] and reward[j] >= reward[i] and (kl[j] < kl[i] or reward[j] > reward[i])
            for j in range(len(kl))
        )
        duplicate_before = any(kl[j] == kl[i] and reward[j] == reward[i] for j in range(i))
        if not dominated and not duplicate_before:
            expected.append(i)
    got = pareto_frontier(kl, reward)
    assert sorted(got.tolist()) == expected
    assert np.all(np.diff(kl[got]) > 0) and np.all(np.diff(reward[got]) > 0)


def test_area_hand_worked() -> None:
    # floor 0.65, budget 2.5: R = 0.65 on [0, 0.5), 0.70 on [0.5, 1.0), 0.80 on [1.0, 2.5]
    # (run 5 at KL 3 is past the budget): 0.5*0.65 + 0.5*0.70 + 1.5*0.80 = 1.875
    assert frontier_area(KL, REWARD, 2.5, 0.65) == pytest.approx(1.875)
    # Budget right at a step: the step adds no width. 0.5*0.65 + 0.5*0.70 = 0.675
    assert frontier_area(KL, REWARD, 1.0, 0.65) == pytest.approx(0.675)


def test_area_floor_above_some_runs() -> None:
    # floor 0.75 lifts run 0 (0.70): 0.5*0.75 + 0.5*0.75 + 1.5*0.80 = 1.95
    assert frontier_area(KL, REWARD, 2.5, 0.75) == pytest.approx(1.95)
    # floor 0.85 is above every run within KL 3: 3*0.85 + 1*0.90 = 3.45 up to budget 4
    assert frontier_area(KL, REWARD, 2.5, 0.85) == pytest.approx(2.5 * 0.85)
    assert frontier_area(KL, REWARD, 4.0, 0.85) == pytest.approx(3.45)


def test_area_edge_cases() -> None:
    assert frontier_area([], [], 2.0, 0.6) == pytest.approx(1.2)
    # A negative KL estimate counts as KL 0: R = 0.7 on all of [0, 1].
    assert frontier_area([-0.1], [0.7], 1.0, 0.6) == pytest.approx(0.7)
    for budget in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="budget"):
            frontier_area(KL, REWARD, budget, 0.65)
    with pytest.raises(ValueError, match="floor"):
        frontier_area(KL, REWARD, 1.0, math.nan)


def test_area_matches_riemann_sum() -> None:
    rng = np.random.default_rng(1)
    kl, reward = rng.uniform(0, 3, size=25), rng.uniform(0.5, 0.9, size=25)
    budget, floor, n = 2.0, 0.6, 200_000
    midpoints = (np.arange(n) + 0.5) * budget / n
    levels = [max(floor, np.nan_to_num(best_within(kl, reward, x), nan=floor)) for x in midpoints]
    assert frontier_area(kl, reward, budget, floor) == pytest.approx(
        np.sum(levels) * budget / n, abs=1e-4
    )


def test_best_within_budgets() -> None:
    assert math.isnan(best_within(KL, REWARD, 0.4))  # no run with KL <= 0.4
    assert best_within(KL, REWARD, 0.5) == pytest.approx(0.70)  # KL <= budget includes equality
    assert best_within(KL, REWARD, 0.9) == pytest.approx(0.70)
    assert best_within(KL, REWARD, 1.0) == pytest.approx(0.80)
    assert best_within(KL, REWARD, 10.0) == pytest.approx(0.90)
    assert math.isnan(best_within([], [], 1.0))


def _run(loss: str, beta: float, seed: int, reward: float, kl: float, **extra) -> dict:
    row = {
        "loss": loss,
        "beta": beta,
        "alpha": 0.0,
        "offset": "none",
        "n_pairs": 100,
        "seed": seed,
        "reward": reward,
        "reward_se": 0.01,
        "kl": kl,
        "kl_se": 0.1,
        "kl_exact": kl,
        "kl_exact_se": 0.1,
        "train_seconds": 1.0,
        "n_eval": 64,
        "scale": "micro",
        "stand_in": True,
        "train_key": f"t{beta}{seed}",
        "eval_key": f"e{beta}{seed}",
    }
    row.update(extra)
    return row


def _odpo(offset: str, alpha: float, beta: float, seed: int, reward: float, kl: float) -> dict:
    return _run("odpo", beta, seed, reward, kl, offset=offset, alpha=alpha)


SFT = _run("sft", math.nan, 0, 0.60, 0.0)
SFT.update(seed=math.nan, n_pairs=math.nan, alpha=math.nan, offset=math.nan, train_seconds=math.nan)


@pytest.fixture
def duel_table() -> pd.DataFrame:
    """DPO and two ODPO variants at n_pairs 100; the outcome of each pair in its comment."""
    rows = [
        SFT,
        _run("dpo", 0.1, 0, 0.80, 2.0),
        _run("dpo", 0.5, 0, 0.70, 1.0),
        _run("dpo", 0.5, 1, 0.72, 1.2),
        _run("dpo", 1.0, 0, 0.65, 0.5),  # no ODPO run at beta 1
        # log_diff, alpha 1
        _odpo("log_diff", 1.0, 0.1, 0, 0.85, 2.5),  # more reward, more KL: neither dominates
        _odpo("log_diff", 1.0, 0.5, 0, 0.75, 0.9),  # more reward, less KL: ODPO dominates
        _odpo("log_diff", 1.0, 0.5, 1, 0.70, 1.3),  # less reward, more KL: DPO dominates
        _odpo("log_diff", 1.0, 2.0, 0, 0.66, 0.4),  # no DPO run at beta 2
        # diff, alpha 0.5; beta 0.1 + 0.2 - 0.2 is not bitwise 0.1 and must still match.
        _odpo("diff", 0.5, 0.1 + 0.2 - 0.2, 0, 0.80, 1.5),  # same reward, less KL: ODPO dominates
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_head_to_head_counts(duel_table: pd.DataFrame) -> None:
    duel = head_to_head(duel_table).set_index("series")
    assert list(duel.index) == ["ODPO (f=diff, α=0.5)", "ODPO (f=log_diff, α=1)"]
    assert set(duel["reference"]) == {"DPO"}
    counts = ["matched", "odpo_better", "odpo_lower_kl", "odpo_dominates"]
    counts.append("reference_dominates")
    assert duel.loc["ODPO (f=log_diff, α=1)", counts].tolist() == [3, 2, 1, 1, 1]
    assert duel.loc["ODPO (f=diff, α=0.5)", counts].tolist() == [1, 0, 1, 1, 0]


def test_head_to_head_alpha_zero_reference() -> None:
    rows = [
        SFT,
        _odpo("log_diff", 0.0, 0.5, 0, 0.70, 1.0),
        _odpo("log_diff", 0.0, 0.5, 1, 0.72, 1.1),
        _odpo("log_diff", 0.5, 0.5, 0, 0.71, 1.0),  # more reward, same KL: ODPO dominates
        _odpo("log_diff", 0.5, 0.5, 1, 0.74, 1.2),  # more reward, more KL: neither
        _odpo("log_diff", 1.0, 0.5, 0, 0.69, 1.1),  # less reward, more KL: alpha 0 dominates
        _odpo("diff", 1.0, 0.5, 0, 0.90, 0.1),  # no diff run at alpha 0: no reference, no row
    ]
    duel = head_to_head(pd.DataFrame(rows, columns=COLUMNS)).set_index("series")
    assert list(duel.index) == ["ODPO (f=log_diff, α=0.5)", "ODPO (f=log_diff, α=1)"]
    assert set(duel["reference"]) == {"DPO (α = 0)"}
    counts = ["matched", "odpo_better", "odpo_lower_kl", "odpo_dominates"]
    counts.append("reference_dominates")
    assert duel.loc["ODPO (f=log_diff, α=0.5)", counts].tolist() == [2, 2, 0, 1, 0]
    assert duel.loc["ODPO (f=log_diff, α=1)", counts].tolist() == [1, 0, 0, 0, 1]


def test_head_to_head_empty_without_odpo() -> None:
    table = pd.DataFrame([SFT, _run("dpo", 0.5, 0, 0.7, 1.0)], columns=COLUMNS)
    assert head_to_head(table).empty


def test_seed_spread(duel_table: pd.DataFrame) -> None:
    spread = seed_spread(duel_table)
    assert len(spread) == 7  # betas: DPO 0.1, 0.5, 1; log_diff 0.1, 0.5, 2; diff 0.1. No SFT
    row = spread[(spread["loss"] == "dpo") & (spread["beta"] == 0.5)].iloc[0]
    assert row["seeds"] == 2
    assert row[["reward_mean", "reward_min", "reward_max"]].tolist() == pytest.approx(
        [0.71, 0.70, 0.72]
    )
    assert row[["kl_mean", "kl_min", "kl_max"]].tolist() == pytest.approx([1.1, 1.0, 1.2])
    single = spread[spread["offset"] == "diff"].iloc[0]
    assert single["seeds"] == 1 and single["reward_min"] == single["reward_max"] == 0.80


def test_write_summary_numbers_and_determinism(duel_table: pd.DataFrame, tmp_path: Path) -> None:
    table = tmp_path / "runs.csv"
    duel_table.to_csv(table, index=False)
    path = write_summary(table, tmp_path, "Small table")
    assert path == tmp_path / "summary.md"
    text = path.read_text()
    first = path.read_bytes()
    assert text.startswith("# Small table\n")
    assert "embedded stand-in" in text and "`micro`" in text
    assert "SFT baseline: reward 0.600 ± 0.010 at KL 0." in text
    # DPO, budget 2, floor 0.6: 0.5*0.60 + 0.5*0.65 + 0.2*0.70 + 0.8*0.72 = 1.341
    assert "| 100 | DPO | 4 | 4 | 1.341 | 0.650 | 0.700 | 0.800 |" in text
    # diff: one run at KL 1.5: 1.5*0.60 + 0.5*0.80 = 1.300; nothing within KL 0.5 or 1
    assert "| 100 | ODPO (f=diff, α=0.5) | 1 | 1 | 1.300 | – | – | 0.800 |" in text
    # log_diff frontier (0.4, .66), (0.9, .75), (2.5, .85): 0.4*0.6 + 0.5*0.66 + 1.1*0.75 = 1.395
    assert "| 100 | ODPO (f=log_diff, α=1) | 4 | 3 | 1.395 | 0.660 | 0.750 | 0.750 |" in text
    assert "| 2 | 0 | 0.400 | 0.660 |" in text  # a frontier point: beta, seed, KL, reward
    assert "| ODPO (f=log_diff, α=1) | DPO | 3 | 2 | 1 | 1 | 1 |" in text
    assert "| DPO | 100 | 0.5 | 2 | 0.710 [0.700, 0.720] | 1.100 [1.000, 1.200] |" in text
    assert write_summary(table, tmp_path / "summary.md", "Small table") == path
    assert path.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file


def test_write_summary_kl_exact_column(duel_table: pd.DataFrame, tmp_path: Path) -> None:
    table = tmp_path / "runs.csv"
    duel_table.assign(kl_exact=duel_table["kl"] * 2).to_csv(table, index=False)
    text = write_summary(table, tmp_path, "t", kl_column="kl_exact").read_text()
    assert "KL is the `kl_exact` column" in text
    assert "| 2 | 0 | 0.800 | 0.660 |" in text
    with pytest.raises(ValueError, match="kl_column"):
        write_summary(table, tmp_path, "t", kl_column="nope")


def test_write_summary_without_training_runs(tmp_path: Path) -> None:
    table = tmp_path / "runs.csv"
    pd.DataFrame([SFT], columns=COLUMNS).to_csv(table, index=False)
    text = write_summary(table, tmp_path, "Only SFT").read_text()
    assert "SFT baseline: reward 0.600 ± 0.010 at KL 0." in text
    assert "No training runs in the table yet." in text
    assert "|" not in text


def test_cli_writes_summary_md(duel_table: pd.DataFrame, tmp_path: Path) -> None:
    folder = tmp_path / "my_experiment"
    folder.mkdir()
    duel_table.to_csv(folder / "runs.csv", index=False)
    assert main([str(folder)]) == 0
    assert (folder / "summary.md").read_text().startswith("# my_experiment\n")
    assert main([str(folder), "--title", "Other"]) == 0
    assert (folder / "summary.md").read_text().startswith("# Other\n")
    assert main([str(tmp_path)]) == 2  # no runs.csv there


def test_sentiment_summary_has_a_frontier_for_every_series(tmp_path: Path) -> None:
    path = write_summary(SENTIMENT, tmp_path, "Sentiment control")
    lines = path.read_text().splitlines()
    start = lines.index(
        "| n_pairs | series | runs | frontier points | area (KL ≤ 2) | "
        "best (KL ≤ 0.5) | best (KL ≤ 1) | best (KL ≤ 2) |"
    )
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    assert {(r[0], r[1]) for r in rows} == {
        (n, s) for n in ("5000", "7500", "10000") for s in ("DPO", "ODPO (f=log_diff, α=1)")
    }
    for row in rows:
        assert int(row[2]) == 28 and int(row[3]) >= 1, row
        assert float(row[4]) > 2 * 0.613  # every series beats SFT somewhere below KL 2
    assert write_summary(SENTIMENT, tmp_path, "Sentiment control").read_bytes() == (
        path.read_bytes()
    )
