"""The committed sentiment results hold the issue's claims: they were produced by
`make sentiment` and are re-checked here whenever they change."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "results"
TABLE = RESULTS / "sentiment" / "runs.csv"
# Every committed experiment and what `make sentiment` / `make ablations` write there.
COMMITTED = {
    "sentiment": ["reward_vs_kl.png", "reward_vs_kl_exact.png"],
    "ablation_scaling": ["reward_vs_kl.png", "reward_vs_kl_exact.png"],
    "ablation_alpha": ["vs_alpha.png", "vs_alpha_exact.png"],
    "toxicity": ["toxicity_vs_kl.png", "toxicity_vs_kl_exact.png"],
}


@pytest.mark.parametrize("folder", sorted(COMMITTED))
def test_committed_results_are_present(folder: str) -> None:
    # A missing file fails here: the checks on committed results never skip.
    for name in ["runs.csv", "summary.md", "figures.json", *COMMITTED[folder]]:
        assert (RESULTS / folder / name).is_file(), f"results/{folder}/{name} is missing"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    assert TABLE.is_file(), f"{TABLE} is missing"
    return pd.read_csv(TABLE)


def test_full_grid_and_baseline(table: pd.DataFrame) -> None:
    runs = table[table["loss"] != "sft"]
    assert len(table[table["loss"] == "sft"]) == 1
    assert len(runs) == 168
    assert runs.groupby("loss").size().to_dict() == {"dpo": 84, "odpo": 84}
    assert sorted(runs["n_pairs"].unique()) == [5000, 7500, 10000]
    assert runs["beta"].nunique() == 14 and sorted(runs["seed"].unique()) == [0, 1]
    for col in ["reward", "reward_se", "kl", "kl_se", "kl_exact", "train_seconds"]:
        assert runs[col].notna().all(), col


def test_training_beats_sft_for_small_beta(table: pd.DataFrame) -> None:
    sft_reward = float(table.loc[table["loss"] == "sft", "reward"].iloc[0])
    runs = table[(table["loss"] != "sft") & (table["beta"] <= 1)]
    assert runs["reward"].median() > sft_reward


@pytest.mark.parametrize("loss", ["dpo", "odpo"])
def test_kl_falls_as_beta_rises(table: pd.DataFrame, loss: str) -> None:
    per_beta = table[table["loss"] == loss].groupby("beta")["kl"].median()
    rank_corr = pd.Series(per_beta.index).corr(pd.Series(per_beta.values), method="spearman")
    assert rank_corr < -0.8, per_beta
