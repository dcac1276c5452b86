"""W&B logging: one run per training run with a stable id, tags and config, the SFT
baseline as its own run, and ``finish()`` even when a run fails."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.infra.atomic import stable_hash
from pipeline.orchestration.record import wandb_id
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


class FakeRun:
    """Stands in for a wandb run: records what is logged and how it finishes."""

    def __init__(self, calls: list[dict], **kwargs: object) -> None:
        self.calls = calls
        calls.append({"init": kwargs, "logged": [], "summary": {}, "finish": None})
        record = calls[-1]
        self.config = type("Config", (), {"update": lambda _, *a, **k: None})()
        self.summary = type("Summary", (), {"update": lambda _, d: record["summary"].update(d)})()

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.calls[-1]["logged"].append((step, dict(metrics)))

    def finish(self, exit_code: int = 0) -> None:
        self.calls[-1]["finish"] = exit_code


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    import wandb

    calls: list[dict] = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: FakeRun(calls, **kwargs))
    return calls


def test_fake_init_receives_the_run_id_group_name_and_tags(
    tmp_path: Path, fake_wandb: list[dict]
) -> None:
    from pipeline.orchestration import graph as plan
    from pipeline.orchestration.main import run_experiment

    cfg = micro_config(tmp_path, "loss.beta=0.5", "seed=1", wandb="offline")
    run_experiment(cfg)
    (call,) = fake_wandb
    init = call["init"]
    train_key = plan.stage_keys(cfg)["train"]
    assert init["id"] == wandb_id("sentiment", train_key) and init["resume"] == "allow"
    assert init["group"] == "sentiment"
    assert init["name"] == "odpo-b0.5-a1-log_diff-n60-s1"
    assert sorted(init["tags"]) == sorted(
        ["loss=odpo", "beta=0.5", "alpha=1.0", "offset=log_diff", "n_pairs=60", "seed=1"]
    )
    assert init["mode"] == "offline"
    steps = [step for step, _ in call["logged"]]
    assert steps == list(range(len(steps))) and steps  # every training step, in order
    assert call["summary"]["eval/reward"] == pytest.approx(
        float(
            pd.read_csv(tmp_path / "results" / "runs.csv").query("loss == 'odpo'")["reward"].iloc[0]
        )
    )
    assert call["finish"] == 0


def test_wandb_finish_runs_when_training_fails(tmp_path: Path, fake_wandb: list[dict]) -> None:
    from pipeline.infra.errors import PipelineError
    from pipeline.orchestration.main import run_experiment

    # A learning rate of 1e30 diverges at step 1.
    cfg = micro_config(tmp_path, "scale.train.lr=1e30", wandb="offline")
    with pytest.raises(PipelineError, match="non-finite loss"):
        run_experiment(cfg)
    assert [c["finish"] for c in fake_wandb] == [1]
