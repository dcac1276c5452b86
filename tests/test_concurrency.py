"""Concurrency at scale=micro: a sweep run by two joblib workers, and two identical sweeps
started at the same moment against one cache and one results folder. Either way every stage
output is computed exactly once (the ledger says so), the run table is complete, nothing
half-written is left behind, and the figures are whole. On this 2-core machine every
process runs with threads=1."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from pipeline.report.figures import outputs_for, plot_results, read_spec
from pipeline.report.runs import read
from tests.conftest import ledger, run_cli

# A four-point sweep: every point shares data, prompts, SFT and classifier; the two points of a
# seed share its sample set, scores, pairs and reference log-probs.
FOUR_POINTS = ["threads=1", "loss.beta=0.1,0.5", "seed=0,1"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
SHARED = ("data", "prompts", "sft", "classifier")
PER_SEED = ("sample", "score", "pairs", "reference")
STAGES_PER_POINT = len(SHARED) + len(PER_SEED) + 3  # + SFT baseline evaluate, train, evaluate


def expected_computed(points: int, seeds: int) -> Counter:
    """How many distinct keys each stage computes for a sweep (plot counted separately)."""
    counts = Counter({stage: 1 for stage in SHARED})
    counts.update({stage: seeds for stage in PER_SEED})
    counts.update({"train": points, "evaluate": points + 1})  # + the SFT baseline
    return counts


def cli_invocation(args: list[str], tmp: Path) -> tuple[list[str], dict]:
    """The exact command and environment ``run_cli`` would use, captured instead of run, so
    that concurrent invocations (Popen) stay identical to the sequential ones."""
    seen: dict = {}

    def capture(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
        seen.update(cmd=list(cmd), env=dict(kwargs["env"]), cwd=kwargs["cwd"])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "run", capture)
        run_cli(args, tmp)
    seen["env"].pop("PIPELINE_KILL_AT", None)  # never inherit a fault-injection point
    return seen["cmd"], {"env": seen["env"], "cwd": seen["cwd"]}


def stage_lines(lines: list[dict]) -> list[dict]:
    return [e for e in lines if e["stage"] != "plot"]


def assert_computed_once(lines: list[dict], expected: Counter) -> None:
    """Every (stage, key) has exactly one ``computed`` line, and the stages computed as many
    distinct keys as the sweep needs."""
    computed = Counter((e["stage"], e["key"]) for e in lines if e["status"] == "computed")
    twice = {k: n for k, n in computed.items() if n != 1}
    assert not twice, f"computed more than once: {twice}"
    keys = {(e["stage"], e["key"]) for e in lines}
    never = keys - set(computed)
    assert not never, f"used but never computed: {sorted(never)}"
    per_stage = Counter(stage for stage, _ in computed if stage != "plot")
    assert per_stage == expected, per_stage
    assert not [e for e in lines if e["status"] not in ("computed", "reused")]


def assert_table(results: Path, points: int) -> None:
    table = read(results / "runs.csv")
    assert len(table) == points + 1, table
    assert (table["loss"] == "sft").sum() == 1
    runs = table[table["loss"] != "sft"]
    assert runs["train_key"].nunique() == points
    assert runs[["reward", "kl", "kl_exact"]].notna().all().all()


def assert_nothing_half_written(tmp: Path) -> None:
    """No build folder, checkpoint or temporary file survives, and every published stage
    folder has its manifest."""
    leftovers = [
        p
        for p in tmp.rglob("*")
        if p.name.startswith((".tmp-", ".ckpt-")) or (p.name.startswith(".") and p.suffix == ".tmp")
    ]
    assert not leftovers, leftovers
    published = [p for p in (tmp / "cache").glob("*/*") if p.is_dir()]
    assert published
    for out in published:
        assert (out / "manifest.json").is_file(), out


def assert_figures_complete(tmp: Path) -> None:
    results = tmp / "results"
    spec = read_spec(results)
    for name in outputs_for(spec["kind"]):
        path = results / name
        assert path.is_file() and path.stat().st_size > 0, path
        if path.suffix == ".png":
            image = mpimg.imread(path)
            assert image.ndim == 3 and min(image.shape[:2]) > 100, image.shape
        elif path.suffix == ".pdf":
            data = path.read_bytes()
            assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:], path
    summary = (results / "summary.md").read_text()
    assert summary.startswith("#") and summary.endswith("\n")
    # The figures were drawn from the final runs.csv: redrawing now is a no-op.
    before = len(ledger(tmp))
    plot_results(results, tmp / "cache")
    (last,) = ledger(tmp)[before:]
    assert (last["stage"], last["status"]) == ("plot", "reused")


def assert_clean_output(stdout: str, stderr: str) -> None:
    """Hydra only warns when a callback raises, so a failed plot would still exit 0."""
    assert "PlotCallback" not in stderr, stderr[-2000:]
    assert "failed its sha256 check" not in stdout


def test_joblib_sweep_computes_each_stage_once_then_reuses(tmp_path):
    first = run_cli(["-m", *JOBLIB, *FOUR_POINTS], tmp_path)
    assert_clean_output(first.stdout, first.stderr)
    lines = ledger(tmp_path)
    assert len(stage_lines(lines)) == 4 * STAGES_PER_POINT
    assert_computed_once(lines, expected_computed(points=4, seeds=2))
    assert [e["status"] for e in lines if e["stage"] == "plot"] == ["computed"]
    assert_table(tmp_path / "results", points=4)
    assert_nothing_half_written(tmp_path)

    again = run_cli(["-m", *JOBLIB, *FOUR_POINTS], tmp_path)
    assert_clean_output(again.stdout, again.stderr)
    new = ledger(tmp_path)[len(lines) :]
    assert len(stage_lines(new)) == 4 * STAGES_PER_POINT
    assert {e["status"] for e in new} == {"reused"}, Counter(e["status"] for e in new)
    assert [e["stage"] for e in new].count("plot") == 1
    assert_table(tmp_path / "results", points=4)
    assert_figures_complete(tmp_path)


def test_two_identical_sweeps_at_once_share_one_cache(tmp_path):
    cmd, kwargs = cli_invocation(["-m", "threads=1", "loss.beta=0.1,0.5", "seed=0"], tmp_path)
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        for _ in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=300))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"{stdout[-3000:]}\n{stderr[-3000:]}"
        assert_clean_output(stdout, stderr)

    lines = ledger(tmp_path)
    assert all(set(e) == {"stage", "key", "status", "seconds"} for e in lines)  # no torn lines
    assert len(stage_lines(lines)) == 2 * 2 * STAGES_PER_POINT
    assert_computed_once(lines, expected_computed(points=2, seeds=1))
    plots = [e for e in lines if e["stage"] == "plot"]
    assert len(plots) == 2 and "computed" in {e["status"] for e in plots}
    assert_table(tmp_path / "results", points=2)
    assert_nothing_half_written(tmp_path)
    assert_figures_complete(tmp_path)
    assert json.loads((tmp_path / "results" / "figures.json").read_text())["kind"]
