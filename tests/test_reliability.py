"""Crash safety, determinism, integrity and numerics at scale=micro.

The kill tests use real SIGKILLs: at named points (``PIPELINE_KILL_AT``, see
scripts/chaos.py) to hit every stage, and at times drawn from a seed."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from scripts import chaos
from tests.conftest import ledger, micro_config, run_cli

# One kill point per stage, in pipeline order; each run is killed at the next point,
# so every stage is interrupted once while the ones before it are already finished.
KILL_POINTS = [
    "data:start",  # data preparation
    "prompts:start",  # sampling and evaluation prompts
    "sft:step:19",  # SFT, after its second checkpoint (micro: every 10 steps of 40)
    "classifier:publish",  # the reward classifier: written, not yet renamed into place
    "sample:publish",  # sampling: every file written, not yet renamed into place
    "score:start",  # scoring
    "pairs:publish",  # the pair subsample
    "reference:start",  # reference log-probs
    "train:step:1",  # DPO/ODPO training mid-epoch (micro: 4 steps, checkpoint every step)
    "evaluate:publish",  # evaluation of the trained policy
    "plot:start",  # plotting
]
# Every stage of a run is interrupted once (plot is not a cache stage but is killed too).
assert {p.split(":")[0] for p in KILL_POINTS} == {
    "data", "prompts", "sft", "classifier", "sample", "score", "pairs", "reference", "train",
    "evaluate", "plot",
}  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    """An uninterrupted micro run: its folder, its run table without timings and
    its duration in seconds. Tests must not modify the folder (copy it first)."""
    workdir = tmp_path_factory.mktemp("reference")
    table, seconds = chaos.reference_run(workdir)
    return workdir, table, seconds


def finished(cache: Path, stage: str) -> list[Path]:
    """Stage directories that look finished: named by their key, with a manifest
    (a ``.tmp-*`` build directory is private to the process building it)."""
    return [
        p
        for p in (cache / stage).glob("*")
        if not p.name.startswith(".") and (p / "manifest.json").is_file()
    ]


def test_kill_at_every_stage_then_resume_gives_the_same_table(
    tmp_path: Path, reference: tuple[Path, str, float]
) -> None:
    outputs = {}
    for kill_at in KILL_POINTS:
        code, out = chaos.run(tmp_path, kill_at=kill_at)
        assert code == -signal.SIGKILL, f"{kill_at}: exit {code}\n{out[-2000:]}"
        outputs[kill_at] = out
        # A killed stage never leaves anything that looks finished.
        stage = kill_at.split(":")[0]
        # The SFT baseline's evaluation was finished by an earlier run; only the
        # trained policy's was interrupted.
        expected = 1 if stage == "evaluate" else 0
        if stage != "plot":
            assert len(finished(tmp_path / "cache", stage)) == expected, kill_at
    before = len(ledger(tmp_path))
    code, out = chaos.run(tmp_path)
    assert code == 0, out[-3000:]
    assert chaos.table(tmp_path) == reference[1]
    # The last run only had the plot left to do: every stage was reused.
    last = ledger(tmp_path)[before:]
    assert {e["status"] for e in last if e["stage"] != "plot"} == {"reused"}
    # SFT and training resumed from their checkpoints instead of starting again.
    assert "[sft] resumed from the checkpoint after step 19" in outputs["classifier:publish"]
    assert "[train] resumed from the checkpoint after step 1" in outputs["evaluate:publish"]
    # Finished stages were never recomputed: one `computed` line per stage key.
    computed = [(e["stage"], e["key"]) for e in ledger(tmp_path) if e["status"] == "computed"]
    assert len(computed) == len(set(computed))
    # Checkpoints are deleted once their stage is published; no temp dirs are left.
    cache = tmp_path / "cache"
    assert not list(cache.glob("*/.ckpt-*")) and not list(cache.glob("*/.tmp-*"))
    assert (tmp_path / "results" / "reward_vs_kl.png").is_file()


def test_kill_at_random_times_then_resume_gives_the_same_table(
    tmp_path: Path, reference: tuple[Path, str, float]
) -> None:
    counts = chaos.rounds(2, seed=3, base=tmp_path, reference=reference[1:])
    assert counts["matched"] == counts["rounds"] == 2
    # Kill times fall inside the reference run's duration; a round whose run finished
    # first would test nothing, so at least one real kill is required.
    assert counts["killed"] >= 1
    assert counts["survived"] == counts["killed"]


def test_same_command_twice_gives_identical_tables(
    tmp_path: Path, reference: tuple[Path, str, float]
) -> None:
    code, out = chaos.run(tmp_path)
    assert code == 0, out[-3000:]
    assert chaos.table(tmp_path) == reference[1]
    # Only the timing column may differ; the figures' summary is byte-identical.
    assert (tmp_path / "results" / "summary.md").read_bytes() == (
        reference[0] / "results" / "summary.md"
    ).read_bytes()


def test_seed_is_part_of_every_seeded_output_identity(reference: tuple[Path, str, float]) -> None:
    cache = reference[0] / "cache"
    for stage in ("sample", "pairs", "train"):
        (config,) = [json.loads((p / "config.json").read_text()) for p in finished(cache, stage)]
        assert config["params"]["seed"] == 0, stage


def test_truncated_artifact_is_detected_and_rebuilt(
    tmp_path: Path, reference: tuple[Path, str, float]
) -> None:
    shutil.copytree(reference[0], tmp_path, dirs_exist_ok=True)
    (sample_dir,) = finished(tmp_path / "cache", "sample")
    samples = sample_dir / "samples.json"
    samples.write_bytes(samples.read_bytes()[:100])  # truncated
    (sft_dir,) = finished(tmp_path / "cache", "sft")
    weights = next((sft_dir / "model").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    before = len(ledger(tmp_path))
    code, out = chaos.run(tmp_path)
    assert code == 0, out[-3000:]
    entries = ledger(tmp_path)[before:]
    status = {(e["stage"], e["status"]) for e in entries}
    assert ("sample", "corrupt") in status and ("sample", "computed") in status
    assert ("sft", "corrupt") in status and ("sft", "computed") in status
    assert "failed its sha256 check" in out
    # Rebuilt deterministically: the same results as before the damage.
    df_a = chaos.table(tmp_path)
    assert df_a == reference[1]


def test_stage_that_fails_leaves_nothing_that_looks_finished(tmp_path: Path) -> None:
    done = run_cli([], tmp_path, check=False, env={chaos.ENV: "pairs:publish"})
    assert done.returncode == -signal.SIGKILL
    assert not finished(tmp_path / "cache", "pairs")
    assert finished(tmp_path / "cache", "score")  # the stage before it did finish


def test_diverging_training_stops_naming_step_and_batch_and_keeps_checkpoint(
    tmp_path: Path,
) -> None:
    # A learning rate of 1e30 blows the weights up after the first update.
    done = run_cli(["scale.train.lr=1e30"], tmp_path, check=False)
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: non-finite loss") and "Traceback" not in done.stderr
    assert "at step 1" in line and "batch of pairs 16..31" in line
    assert "last good checkpoint" in line
    (ckpt,) = (tmp_path / "cache" / "train").glob(".ckpt-*")
    assert (ckpt / "state.pt").is_file()
    assert not finished(tmp_path / "cache", "train")
    assert not (tmp_path / "results" / "runs.csv").exists()


def test_interrupted_sweep_resumes_where_it_stopped(tmp_path: Path) -> None:
    sweep = ["-m", "loss.beta=0.1,0.5,1"]
    # Killed as the second of three training runs starts: the first one is finished.
    done = run_cli(sweep, tmp_path, check=False, env={chaos.ENV: "train:start#2"})
    assert done.returncode == -signal.SIGKILL
    assert len(finished(tmp_path / "cache", "train")) == 1
    before = len(ledger(tmp_path))
    run_cli(sweep, tmp_path)
    trains = [e["status"] for e in ledger(tmp_path)[before:] if e["stage"] == "train"]
    assert trains == ["reused", "computed", "computed"]
    runs = (tmp_path / "results" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 1 + 3  # header, SFT baseline, three runs
    # Running the finished sweep again skips every run.
    before = len(ledger(tmp_path))
    run_cli(sweep, tmp_path)
    assert {e["status"] for e in ledger(tmp_path)[before:]} == {"reused"}


def test_scorer_returning_nan_is_an_error_naming_stage_and_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.infra.errors import DataError
    from pipeline.orchestration.main import run_experiment
    from pipeline.scoring import scorers

    class BrokenScorer:
        def prob(self, texts: list[str]) -> np.ndarray:
            p = np.full(len(texts), 0.5)
            p[7] = np.nan
            return p

    monkeypatch.setattr(scorers, "load", lambda *args, **kwargs: BrokenScorer())
    cfg = micro_config(tmp_path)
    with pytest.raises(DataError, match=r"\[score\] scorer returned nan for row 7"):
        run_experiment(cfg)
    assert not finished(tmp_path / "cache", "score")
