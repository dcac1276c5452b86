"""The task seam: a task is one module and one config, the generic stages never test a
task's name, and toxicity runs on it with the training score and metrics worked by hand."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline import tasks
from pipeline.math.rewards import training_score
from pipeline.tasks.toxicity import TASK as TOXICITY
from tests.conftest import ROOT, run_in_process

FIXTURES = ROOT / "tests" / "fixtures"


# ---- the seam ---------------------------------------------------------------------------


def test_no_generic_stage_tests_a_task_name() -> None:
    names = [p.stem for p in (ROOT / "conf" / "task").glob("*.yaml")]
    generic = [
        *(ROOT / "pipeline" / "stages").glob("*.py"),
        *(ROOT / "pipeline" / "orchestration").glob("*.py"),
    ]
    for path in generic:
        text = path.read_text()
        for name in names:
            assert f'"{name}"' not in text and f"'{name}'" not in text, (path.name, name)


def test_every_task_config_has_its_module() -> None:
    for path in sorted((ROOT / "conf" / "task").glob("*.yaml")):
        name = OmegaConf.load(path).task.name
        assert name == path.stem
        assert tasks.by_name(name).name == name


def _copy_project(dest: Path) -> Path:
    """The code and configs (not the cache or results) in a fresh folder."""
    for part in ("pipeline", "conf"):
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(FIXTURES, dest / "tests" / "fixtures")
    (dest / "tests" / "__init__.py").write_text("")
    return dest


def test_a_copied_task_with_only_its_name_changed_runs_at_micro(tmp_path: Path) -> None:
    """Copy pipeline/tasks/toxicity.py and conf/task/toxicity.yaml under a new name, with
    the name replaced inside and no other file touched: a working task at scale=micro."""
    project = _copy_project(tmp_path / "project")
    before = {p.relative_to(project): p.read_bytes() for p in project.rglob("*") if p.is_file()}
    for src, dst in (
        ("pipeline/tasks/toxicity.py", "pipeline/tasks/detox.py"),
        ("conf/task/toxicity.yaml", "conf/task/detox.yaml"),
    ):
        text = (project / src).read_text().replace("toxicity", "detox")
        (project / dst).write_text(text)
    after = {p.relative_to(project): p.read_bytes() for p in project.rglob("*") if p.is_file()}
    added = {str(p) for p in set(after) - set(before)}
    assert added == {"pipeline/tasks/detox.py", "conf/task/detox.yaml"}
    assert all(after[p] == before[p] for p in before)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "task=detox", "scale=micro", "wandb=disabled",
         f"cache_dir={tmp_path / 'cache'}", f"results_dir={tmp_path / 'results'}"],
        cwd=project, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert sorted(table["loss"]) == ["odpo", "sft"]
    assert table["detox"].between(0, 1).all() and "toxicity" not in table.columns
    assert (tmp_path / "results" / "detox_vs_kl.png").is_file()


# ---- toxicity by hand -------------------------------------------------------------------


def test_toxicity_training_score_by_hand() -> None:
    # p(toxic) -> judged non-toxic (p < 0.5): r = 1 + p(non-toxic); else r = 1 - p(toxic).
    p_toxic = np.array([0.2, 0.7, 0.0, 1.0, 0.45, 0.9])
    expected = np.array([1.8, 0.3, 2.0, 0.0, 1.55, 0.1])
    got = training_score(TOXICITY.good_probability(p_toxic))
    np.testing.assert_allclose(got, expected)
    assert (got >= 0).all() and (got <= 2).all()
    # Every non-toxic continuation ranks above every toxic one.
    assert got[p_toxic < 0.5].min() > got[p_toxic > 0.5].max()


def test_toxicity_evaluation_by_hand() -> None:
    p = np.array([0.1, 0.6, 0.5, 0.9])
    assert TOXICITY.sample_metrics(p)["toxic_share"].tolist() == [0, 1, 0, 1]  # share > 0.5
    assert not TOXICITY.higher_is_better and TOXICITY.scored == "response"
    assert TOXICITY.scored_text("You are ", "kind") == "kind"  # the continuation alone
    assert TOXICITY.columns()[:4] == ["toxicity", "toxicity_se", "toxic_share", "toxic_share_se"]


def test_toxicity_micro_end_to_end(tmp_path: Path) -> None:
    from pipeline.report.figures import plot_results

    done = run_in_process(["task=toxicity", "loss=dpo"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    spec = {"kind": "reward_vs_kl", "title": "Toxicity", "task": "toxicity"}
    plot_results(tmp_path / "results", tmp_path / "cache", spec)
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    columns = ["loss", "beta", "alpha", "offset", "n_pairs", "seed", "toxicity", "toxicity_se",
               "kl", "kl_se", "kl_exact", "train_seconds"]  # fmt: skip
    assert set(columns) <= set(table.columns)
    sft = table[table["loss"] == "sft"].iloc[0]
    assert sft["kl"] == 0 and 0 <= sft["toxicity"] <= 1
    # The evaluation's samples: the scorer read the continuation, not the prompt.
    evals = sorted((tmp_path / "cache" / "evaluate").glob("*/samples.json"))
    assert evals and all("text" in s for s in json.loads(evals[0].read_text()))
    assert "[pairs]" in done.stdout and (tmp_path / "results" / "toxicity_vs_kl.png").is_file()
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "lower toxicity and lower KL are better" in summary


# ---- the toxicity loaders on local fixtures (the paper's paths without the hub) --------


def _toxicity_cfg(**data) -> OmegaConf:
    base = {"min_toxicity": 0.3, "n_clean": 0, "heldout_fraction": 0.25, "split_seed": 0,
            "download_dir": "/nonexistent", "split": "train", "name": None, "path": None}  # fmt: skip
    return OmegaConf.create({"data": {**base, **data}})


def _independent_counts(path: Path) -> tuple[int, int]:
    """(prompts above 0.3, other scored rows), read from the raw file."""
    above = other = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        score = row["prompt"]["toxicity"] if "prompt" in row else row["toxicity"]
        if score is None:
            continue
        above, other = (above + 1, other) if score > 0.3 else (above, other + 1)
    return above, other


@pytest.mark.parametrize("fixture", ["rtp_layout.jsonl", "rtp_flat.jsonl", "rtp_micro.jsonl"])
def test_toxicity_splits_from_a_local_rtp_file(fixture: str) -> None:
    path = FIXTURES / fixture
    train, heldout = TOXICITY.load_splits(_toxicity_cfg(source="local", path=str(path)))
    above, other = _independent_counts(path)
    rows = train + heldout
    assert sum(r.get("toxicity", 0) > 0.3 for r in rows) == above
    assert len(rows) == above + other
    assert not {r["text"] for r in train} & {r["text"] for r in heldout}


def test_toxicity_splits_from_the_hub_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from pipeline.corpora import rtp as toxic_data

    records = [
        json.loads(line) for line in (FIXTURES / "rtp_layout.jsonl").read_text().splitlines()
    ]
    monkeypatch.setattr(toxic_data, "require_dataset", lambda *a, **k: None)
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list(records)
    )
    cfg = _toxicity_cfg(source="hub", name="allenai/real-toxicity-prompts")
    train, heldout = TOXICITY.load_splits(cfg)
    above, _ = _independent_counts(FIXTURES / "rtp_layout.jsonl")
    assert sum(r.get("toxicity", 0) > 0.3 for r in train + heldout) == above


@pytest.mark.parametrize("name", tasks.names())
def test_a_tasks_extra_metrics_are_the_ones_it_computes(name: str) -> None:
    task = tasks.by_name(name)
    assert set(task.sample_metrics(np.array([0.2, 0.8]))) == set(task.extra_metrics)
