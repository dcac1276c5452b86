"""The whole pipeline end to end at scale=micro, a -m sweep, and cache reuse read from the ledger."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pandas as pd

from tests.conftest import ledger, run_cli

STAGES = {
    "data",
    "prompts",
    "sft",
    "classifier",
    "sample",
    "score",
    "pairs",
    "reference",
    "train",
    "evaluate",
    "plot",
}
REQUIRED_COLUMNS = [
    "loss",
    "beta",
    "alpha",
    "offset",
    "n_pairs",
    "seed",
    "reward",
    "reward_se",
    "kl",
    "kl_se",
    "kl_exact",
    "train_seconds",
]


def test_end_to_end_micro_under_a_minute_then_nothing_recomputed(tmp_path: Path) -> None:
    start = time.perf_counter()
    run_cli([], tmp_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"micro end to end took {elapsed:.1f}s"

    first = ledger(tmp_path)
    assert {e["stage"] for e in first} == STAGES
    assert all(e["status"] == "computed" for e in first)
    assert all(set(e) == {"stage", "key", "status", "seconds"} for e in first)

    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert list(table.columns[: len(REQUIRED_COLUMNS)]) == REQUIRED_COLUMNS or set(
        REQUIRED_COLUMNS
    ) <= set(table.columns)
    assert sorted(table["loss"]) == ["odpo", "sft"]
    sft = table[table["loss"] == "sft"].iloc[0]
    assert sft["kl"] == 0 and sft["kl_exact"] == 0  # the baseline against itself
    run = table[table["loss"] == "odpo"].iloc[0]
    assert 0 <= run["reward"] <= 1 and run["kl"] >= 0 and run["kl_exact"] >= 0
    assert (tmp_path / "results" / "reward_vs_kl.png").stat().st_size > 0
    assert (tmp_path / "results" / "reward_vs_kl.pdf").is_file()

    # Every stage directory carries its resolved config and a manifest.
    for stage_dir in (tmp_path / "cache").glob("*/*"):
        if stage_dir.is_dir() and not stage_dir.name.startswith("."):
            assert (stage_dir / "config.json").is_file() and (stage_dir / "manifest.json").is_file()

    run_cli([], tmp_path)
    second = ledger(tmp_path)[len(first) :]
    assert {e["stage"] for e in second} == STAGES
    assert all(e["status"] == "reused" for e in second), second  # the figures too
    assert (
        pd.read_csv(tmp_path / "results" / "runs.csv")
        .drop(columns=["train_seconds"])
        .equals(table.drop(columns=["train_seconds"]))
    )


def test_two_point_sweep_shares_every_upstream_stage(tmp_path: Path) -> None:
    done = run_cli(["-m", "loss=dpo,odpo"], tmp_path)
    assert "[plot]" in done.stdout
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert sorted(table["loss"]) == ["dpo", "odpo", "sft"]
    dpo = table[table["loss"] == "dpo"].iloc[0]
    assert dpo["alpha"] == 0 and dpo["offset"] == "none"

    computed = Counter(e["stage"] for e in ledger(tmp_path) if e["status"] == "computed")
    for shared in ("data", "prompts", "sft", "classifier", "sample", "score", "pairs", "reference"):
        assert computed[shared] == 1, (shared, computed)
    assert computed["train"] == 2
    assert computed["evaluate"] == 3  # two policies and the SFT baseline once


def test_seeds_give_different_sample_sets_and_pairs(tmp_path: Path) -> None:
    run_cli(["-m", "seed=0,1", "loss=dpo"], tmp_path)
    computed = Counter(e["stage"] for e in ledger(tmp_path) if e["status"] == "computed")
    assert computed["sft"] == 1 and computed["sample"] == 2 and computed["pairs"] == 2
    samples = sorted((tmp_path / "cache" / "sample").glob("*/samples.json"))
    assert len(samples) == 2 and samples[0].read_text() != samples[1].read_text()


def test_training_logs_every_step_and_wandb_offline_run(tmp_path: Path) -> None:
    run_cli(["loss.beta=0.5"], tmp_path, wandb="offline")
    logs = list((tmp_path / "cache" / "train").glob("*/train_log.csv"))
    assert len(logs) == 1
    log = pd.read_csv(logs[0])
    for col in [
        "train/loss",
        "train/rewards_chosen",
        "train/rewards_rejected",
        "train/margins",
        "train/accuracy",
        "train/offset",
        "train/grad_norm",
    ]:
        assert log[col].notna().all(), col
    assert list(log["step"]) == list(range(len(log)))  # every step at micro scale (log_every=1)
    assert (log["train/offset"] > -100).all()
    runs = list((tmp_path / "cache" / "wandb").rglob("offline-run-*"))
    assert runs, "no offline W&B run was written"
