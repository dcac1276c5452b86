"""task=custom end to end on your own scored data: flat and grouped files with groups of
different sizes, an empty response and ties, every count checked against one computed
here from the raw lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, ledger, run_in_process

FIXTURES = ROOT / "tests" / "fixtures"


def raw_groups(path: Path, fields: dict) -> dict[str, list[tuple[str, float]]]:
    """prompt -> [(response, score)] straight from the JSON lines, in file order."""
    groups: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        prompt = row[fields["prompt"]]
        if fields["responses"] in row:
            items = list(zip(row[fields["responses"]], row[fields["scores"]], strict=True))
        else:
            items = [(row[fields["text"]], row[fields["score"]])]
        groups.setdefault(prompt, []).extend(items)
    return groups


def count_pairs(items: list[tuple[str, float]]) -> int:
    return sum(
        items[i][1] != items[j][1] for i in range(len(items)) for j in range(i + 1, len(items))
    )


def run_custom(args: list[str], tmp: Path):
    """One micro run in this process (no new Python, no Hydra callback)."""
    done = run_in_process(args, tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def stage_dir(tmp: Path, stage: str) -> Path:
    (key,) = {e["key"] for e in ledger(tmp) if e["stage"] == stage}
    return tmp / "cache" / stage / key


DEFAULT = {"prompt": "prompt", "text": "text", "score": "reward", "responses": "responses",
           "scores": "scores"}  # fmt: skip


@pytest.mark.parametrize("fixture", ["custom_flat.jsonl", "custom_grouped.jsonl"])
def test_custom_runs_end_to_end_with_independent_counts(tmp_path: Path, fixture: str) -> None:
    path = FIXTURES / fixture
    groups = raw_groups(path, DEFAULT)
    sizes = {len(v) for v in groups.values()}
    assert len(sizes) > 1  # the fixture has groups of different sizes
    empties = sum(r == "" for items in groups.values() for r, _ in items)
    assert empties >= 1
    done = run_custom(["task=custom", f"data.path={path}", "data.heldout_fraction=0.4"], tmp_path)

    n_responses = sum(len(v) for v in groups.values())
    assert f"{len(groups)} prompts, {n_responses} responses ({empties} empty)" in done.stdout
    # The training groups are the prompts the data stage kept for training.
    train = [json.loads(x) for x in (stage_dir(tmp_path, "data") / "train.jsonl").open()]
    held = [json.loads(x) for x in (stage_dir(tmp_path, "data") / "test.jsonl").open()]
    assert {r["text"] for r in train} | {r["text"] for r in held} == set(groups)
    assert not {r["text"] for r in train} & {r["text"] for r in held}
    available = sum(count_pairs(groups[r["text"]]) for r in train)
    kept = min(available, 60)  # micro's n_pairs; task=custom uses every pair when fewer
    assert re.search(rf"\[pairs\] {available} pairs available, kept {kept} ", done.stdout)

    # Every response kept, the empty one as EOS alone; training scores as given (NaN pads).
    samples = json.loads((stage_dir(tmp_path, "sample") / "samples.json").read_text())
    assert [len(r) for r in samples["responses"]] == [len(groups[r["text"]]) for r in train]
    with np.load(stage_dir(tmp_path, "score") / "scores.npz") as z:
        scores = z["score"]
    for i, row in enumerate(train):
        given = [s for _, s in groups[row["text"]]]
        np.testing.assert_array_equal(scores[i, : len(given)], given)
        assert np.isnan(scores[i, len(given) :]).all()
    with np.load(stage_dir(tmp_path, "pairs") / "pairs.npz") as z:
        assert len(z["prompt"]) == kept and (z["score_chosen"] > z["score_rejected"]).all()

    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    sft, run = table[table["loss"] == "sft"].iloc[0], table[table["loss"] != "sft"].iloc[0]
    assert int(run["n_pairs"]) == kept
    held_pairs = sum(count_pairs(groups[r["text"]]) for r in held)
    assert held_pairs > 0
    assert sft["pair_accuracy"] == 0.5 and sft["margin"] == 0  # the SFT model ties itself
    assert 0 <= run["pair_accuracy"] <= 1 and sft["kl"] == 0 and run["kl"] >= 0
    assert np.isnan(run["reward"])  # no scorer named
    from pipeline.report.figures import plot_results

    spec = {"kind": "reward_vs_kl", "title": "mine", "task": "custom"}
    plot_results(tmp_path / "results", tmp_path / "cache", spec)
    assert (tmp_path / "results" / "pair_accuracy_vs_kl.png").is_file()


def test_custom_field_names_and_a_named_scorer(tmp_path: Path) -> None:
    path = FIXTURES / "custom_fields.jsonl"
    fields = {"prompt": "question", "text": "answer", "score": "rating", "responses": "answers",
              "scores": "ratings"}  # fmt: skip
    groups = raw_groups(path, fields)
    args = [f"data.{k}_field={v}" for k, v in fields.items() if k in ("prompt", "score")]
    args += [f"data.response_field={fields['text']}", f"data.responses_field={fields['responses']}",
             f"data.scores_field={fields['scores']}"]  # fmt: skip
    done = run_custom(
        ["task=custom", f"data.path={path}", "data.heldout_fraction=0.5", "scorer=keyword", *args],
        tmp_path,
    )
    assert f"{len(groups)} prompts" in done.stdout
    run = pd.read_csv(tmp_path / "results" / "runs.csv").query("loss != 'sft'").iloc[0]
    assert 0 <= run["reward"] <= 1  # the keyword scorer's mean on the held-out samples


def test_custom_ties_form_no_pair_and_the_offsets_use_the_given_scores(tmp_path: Path) -> None:
    path = FIXTURES / "custom_grouped.jsonl"
    run_custom(
        ["task=custom", f"data.path={path}", "data.heldout_fraction=0.4", "n_pairs=3"], tmp_path
    )
    with np.load(stage_dir(tmp_path, "pairs") / "pairs.npz") as z:
        assert len(z["prompt"]) == 3
        assert (z["score_chosen"] != z["score_rejected"]).all()
    log = pd.read_csv(stage_dir(tmp_path, "train") / "train_log.csv")
    assert np.isfinite(log["train/loss"]).all() and np.isfinite(log["train/offset"]).all()
