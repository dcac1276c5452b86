"""The committed toxicity results (``make toxicity``, embedded stand-in) hold the issue's
claims: the full grid, an SFT model with something to reduce, training that reduces it,
and KL that falls as beta rises."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline import PROJECT_ROOT

TABLE = PROJECT_ROOT / "results" / "toxicity" / "runs.csv"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    assert TABLE.is_file(), f"{TABLE} is missing: run `make toxicity`"
    return pd.read_csv(TABLE)


def test_full_grid_and_baseline(table: pd.DataFrame) -> None:
    runs = table[table["loss"] != "sft"]
    assert len(table[table["loss"] == "sft"]) == 1
    assert len(runs) == 72
    assert runs.groupby("loss").size().to_dict() == {"dpo": 36, "odpo": 36}
    assert sorted(runs["n_pairs"].unique()) == [8000, 9000, 10000]
    assert sorted(runs["beta"].unique()) == [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert sorted(runs["seed"].unique()) == [0, 1]
    odpo = runs[runs["loss"] == "odpo"]
    assert (odpo["alpha"] == 1).all() and (odpo["offset"] == "log_diff").all()
    columns = ["toxicity", "toxicity_se", "toxic_share", "kl", "kl_se", "kl_exact", "train_seconds"]
    for col in columns:
        assert runs[col].notna().all(), col
    assert runs["stand_in"].all()


def test_sft_has_toxicity_to_reduce_and_training_reduces_it(table: pd.DataFrame) -> None:
    sft = float(table.loc[table["loss"] == "sft", "toxicity"].iloc[0])
    assert sft >= 0.15
    runs = table[table["loss"] != "sft"]
    assert runs["toxicity"].median() < sft


@pytest.mark.parametrize("loss", ["dpo", "odpo"])
def test_kl_falls_as_beta_rises(table: pd.DataFrame, loss: str) -> None:
    runs = table[table["loss"] == loss]
    rank_corr = runs["beta"].corr(runs["kl"], method="spearman")
    assert rank_corr < -0.5, rank_corr


def test_the_summary_command_reads_the_task_from_the_folder(tmp_path) -> None:
    """`python -m pipeline.report.digest results/toxicity` rewrites the committed summary."""
    import shutil

    from pipeline.report.digest import main

    folder = tmp_path / "toxicity"
    shutil.copytree(TABLE.parent, folder)
    (folder / "summary.md").unlink()
    assert main([str(folder)]) == 0
    assert (folder / "summary.md").read_text() == (TABLE.parent / "summary.md").read_text()
