"""W&B logging: one run per training run with a stable id, tags and config, the SFT
baseline as its own run, and ``finish()`` even when a run fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cache import stable_hash
from pipeline.main import wandb_id
from tests.conftest import micro_config, run_cli


def offline_runs(tmp: Path) -> dict[str, Path]:
    """run id -> its .wandb file, for every offline run under the tmp cache."""
    files = (tmp / "cache" / "wandb" / "wandb").glob("offline-run-*/run-*.wandb")
    return {f.stem.removeprefix("run-"): f for f in files}


def test_offline_runs_are_named_tagged_and_stable_across_reruns(tmp_path: Path) -> None:
    run_cli(["loss.beta=0.5", "seed=1"], tmp_path, wandb="offline")
    (train_dir,) = [p for p in (tmp_path / "cache" / "train").iterdir() if p.is_dir()]
    (sft_eval,) = [
        json.loads(p.read_text())["key"]
        for p in (tmp_path / "cache" / "evaluate").glob("*/manifest.json")
        if json.loads((p.parent / "config.json").read_text())["inputs"][0][0] == "sft"
    ]
    train_id = wandb_id("sentiment", train_dir.name)
    sft_id = stable_hash(["sentiment", "sft", sft_eval])[:16]
    runs = offline_runs(tmp_path)
    assert set(runs) == {train_id, sft_id}
    record = runs[train_id].read_bytes()
    for needle in (
        b"odpo-b0.5-a1-log_diff-n60-s1",  # name from the sweep values
        b"sentiment",  # group = experiment
        b"loss=odpo",
        b"beta=0.5",
        b"alpha=1.0",
        b"offset=log_diff",
        b"n_pairs=60",
        b"seed=1",
        b"train/loss",  # training curves
        b"eval/reward",  # final metrics
        b"sft/reward",
        b"train_key",  # the resolved config
    ):
        assert needle in record, needle
    assert b"sft-baseline" in runs[sft_id].read_bytes()
    # A second invocation (everything reused) logs to the same two W&B runs.
    run_cli(["loss.beta=0.5", "seed=1"], tmp_path, wandb="offline")
    dirs = list((tmp_path / "cache" / "wandb" / "wandb").glob("offline-run-*"))
    assert {d.name.rsplit("-", 1)[1] for d in dirs} == {train_id, sft_id}


def test_wandb_finish_runs_when_training_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    from pipeline.errors import PipelineError
    from pipeline.main import run_experiment

    finished: list[int] = []

    class FakeRun:
        config = type("Config", (), {"update": lambda self, *a, **k: None})()
        summary = type("Summary", (), {"update": lambda self, *a, **k: None})()

        def log(self, *args: object, **kwargs: object) -> None:
            pass

        def finish(self, exit_code: int = 0) -> None:
            finished.append(exit_code)

    monkeypatch.setattr(wandb, "init", lambda **kwargs: FakeRun())
    # A learning rate of 1e30 diverges at step 1.
    cfg = micro_config(tmp_path, "scale.train.lr=1e30", wandb="offline")
    with pytest.raises(PipelineError, match="non-finite loss"):
        run_experiment(cfg)
    assert finished == [1]
