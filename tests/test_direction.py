"""Every task's direction, end to end, with a known answer.

For each task in the registry (``pipeline.tasks.names()``: a task added later is covered
without editing this file), a micro run of SFT, DPO and ODPO whose optimum is certain, here
the count of the letter "e" in a response:

- a task scored by a scorer gets the ``keyword`` scorer (p = k / (k + 4), k the "e" count):
  with ``higher_is_better`` more "e" is better, without it (toxicity: p is p(toxic)) fewer;
- a task that brings or rates its own scores gets a data file written here whose score of a
  response is its "e" count (a recipe in ``DATA_RECIPES``; a task that needs one and has
  none fails here, by name).

Then, in the task's own direction:
1. the chosen response of every training pair is the better one;
2. the task's metric after training beats SFT's by a margin computed here from the
   standard errors (not for summarize: see ``SIGNAL_ONLY``), and a scorer's metric is the
   scorer re-applied to the saved evaluation texts;
3. summary.md's area under the frontier and its head-to-head count are the ones computed
   here from runs.csv with the task's direction.

A lower-is-better task (toxicity) and higher-is-better ones run through the same test.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline import tasks
from pipeline.report.figures import plot_results
from tests.conftest import ROOT, ledger, micro_config, run_in_process

HALF = 4.0
TRAIN = ["scale.train.lr=5e-3", "n_pairs=400", "loss.beta=0.5"]
RUNS = (["loss=dpo"], ["loss=odpo", "loss.alpha=1"])
# What each task of the paper means; a new task states its own (higher_is_better) and
# this pin is only for the three whose meaning is the paper's.
PAPER_DIRECTIONS = {"sentiment": True, "toxicity": False, "summarize": True}


def e_count(text: str) -> int:
    return text.lower().count("e")


def keyword_p(text: str) -> float:
    k = e_count(text)
    return k / (k + HALF)


# ---- data recipes for tasks that bring their own scores --------------------------------

E_WORDS = ["eerie", "serene", "free", "tree", "sleepless", "keen", "green", "gentle"]
PLAIN_WORDS = ["cat", "dog", "sun", "moon", "a", "fun", "ugly", "old", "big", "its", "dry"]


def _phrase(rng: random.Random, n_e: int) -> str:
    words = rng.sample(E_WORDS, n_e) + rng.sample(PLAIN_WORDS, 4 - n_e)
    rng.shuffle(words)
    return " " + " ".join(words) + "."


def custom_recipe(tmp: Path) -> list[str]:
    """Grouped rows: 60 prompts with 5 responses each, every response scored by its "e"
    count (ties form no pair); a named keyword scorer reports the same signal."""
    rng = random.Random(0)
    lines = []
    for i in range(60):
        responses = [_phrase(rng, n) for n in rng.sample(range(5), 5)]
        prompt = f"Review {i} of {' '.join(rng.sample(PLAIN_WORDS, 2))}:"
        lines.append({"prompt": prompt, "responses": responses,
                      "scores": [float(e_count(r)) for r in responses]})  # fmt: skip
    path = tmp / "known.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return ["task=custom", f"data.path={path}", "data.heldout_fraction=0.25", "scorer=keyword"]


def summarize_recipe(tmp: Path) -> list[str]:
    """The micro fixture's rated summaries, re-rated here: overall = 1 + the summary's "e"
    count (capped at 7), so a summary with more "e" is the better one."""
    source = ROOT / "tests" / "fixtures" / "summarize_micro" / "feedback.jsonl"
    rows = [json.loads(x) for x in source.read_text().splitlines() if x.strip()]
    for row in rows:
        row["summary"]["axes"]["overall"] = min(7, 1 + e_count(row["summary"]["text"]))
    path = tmp / "feedback.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in rows))
    return ["task=summarize", f"data.feedback_path={path}"]


DATA_RECIPES: dict[str, Callable[[Path], list[str]]] = {
    "custom": custom_recipe,
    "summarize": summarize_recipe,
}
# Tasks whose metric the micro model cannot move: summarize's offline rater gives 0 to every
# text a 0.33M model writes, and the known signal on its 16 evaluation samples (the "e"
# count) moved by less than its noise in every setting tried (up to 6 epochs of its 86
# pairs). Its pairs and its summary are still checked here; its metric's direction is the
# higher-is-better one sentiment's check covers, and SmolLM2's results show it move.
SIGNAL_ONLY = {"summarize"}


def needs_data(task: tasks.Task) -> bool:
    """Whether the task's training scores come with its data or its own rating (no scorer)."""
    return task.rates_own_samples or type(task).given_scores is not tasks.Task.given_scores


def setup(name: str, tmp: Path) -> list[str]:
    task = tasks.by_name(name)
    if needs_data(task):
        if name not in DATA_RECIPES:
            pytest.fail(f"task={name} brings or rates its own scores: give it a known-answer "
                        "data recipe in tests/test_direction.py DATA_RECIPES")  # fmt: skip
        return DATA_RECIPES[name](tmp)
    return [f"task={name}", "scorer=keyword", "scale.sample.n_samples=8"]


# ---- the runs ---------------------------------------------------------------------------


def stage_dir(tmp: Path, stage: str) -> Path:
    (key,) = {e["key"] for e in ledger(tmp) if e["stage"] == stage}
    return tmp / "cache" / stage / key


@pytest.fixture(scope="module", params=tasks.names())
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    name = request.param
    tmp = tmp_path_factory.mktemp(f"direction-{name}")
    base = setup(name, tmp)
    for args in RUNS:
        done = run_in_process([*base, *TRAIN, *args], tmp)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    # What the sweep's callback does after the runs: the figures and summary.md.
    figures = OmegaConf.to_container(micro_config(tmp, *base).figures, resolve=True)
    plot_results(tmp / "results", tmp / "cache", figures)
    task = tasks.by_name(name)
    return {
        "name": name,
        "task": task,
        "sign": 1.0 if (needs_data(task) or task.higher_is_better) else -1.0,
        "tmp": tmp,
        "table": pd.read_csv(tmp / "results" / "runs.csv"),
        "summary": (tmp / "results" / "summary.md").read_text(),
    }


def rows(run: dict) -> tuple[pd.Series, list[pd.Series]]:
    t = run["table"]
    assert sorted(t["loss"]) == ["dpo", "odpo", "sft"], t["loss"].tolist()
    return t[t["loss"] == "sft"].iloc[0], [t[t["loss"] == x].iloc[0] for x in ("dpo", "odpo")]


def eval_texts(run: dict, row: pd.Series) -> list[str]:
    path = run["tmp"] / "cache" / "evaluate" / row["eval_key"] / "samples.json"
    return [s["text"] for s in json.loads(path.read_text())]


# ---- the checks -------------------------------------------------------------------------


def test_the_paper_tasks_keep_their_direction() -> None:
    for name, higher in PAPER_DIRECTIONS.items():
        assert tasks.by_name(name).higher_is_better is higher, name


def test_every_training_pair_chooses_the_better_response(run: dict) -> None:
    samples = json.loads((stage_dir(run["tmp"], "sample") / "samples.json").read_text())
    with np.load(stage_dir(run["tmp"], "pairs") / "pairs.npz") as z:
        prompt, chosen, rejected = z["prompt"], z["chosen"], z["rejected"]
    assert len(prompt) >= 20, len(prompt)
    texts = samples["texts"]
    good = [run["sign"] * e_count(texts[p][c]) for p, c in zip(prompt, chosen, strict=True)]
    bad = [run["sign"] * e_count(texts[p][r]) for p, r in zip(prompt, rejected, strict=True)]
    wrong = [i for i, (g, b) in enumerate(zip(good, bad, strict=True)) if g <= b]
    assert not wrong, f"{len(wrong)} of {len(prompt)} pairs choose the worse response"


def test_training_moves_the_metric_in_the_tasks_direction(run: dict) -> None:
    sft, trained = rows(run)
    task, sign = run["task"], run["sign"]
    if run["name"] in SIGNAL_ONLY:
        pytest.skip(f"task={run['name']}'s metric reads 0 for every text a micro model writes")
    m = task.metric
    for row in trained:
        se = float(np.hypot(row[f"{m}_se"], sft[f"{m}_se"]))
        gain, margin = sign * (row[m] - sft[m]), max(2 * se, 0.02)
        assert gain > margin, (row["loss"], gain, margin)


def test_a_scorers_metric_is_the_scorer_on_the_saved_evaluation_texts(run: dict) -> None:
    sft, trained = rows(run)
    column = run["task"].scorer_metric or run["task"].metric
    if run["name"] in SIGNAL_ONLY:
        pytest.skip("summarize's metric is the offline rater's, not a scorer's")
    for row in [sft, *trained]:
        expected = np.mean([keyword_p(t) for t in eval_texts(run, row)])
        assert row[column] == pytest.approx(expected, abs=1e-12), row["loss"]


def expected_area(kl: np.ndarray, metric: np.ndarray, floor: float, budget: float, sign: float):
    """∫_0^budget R(x) dx, R(x) the best metric (by ``sign``) of SFT and runs with KL <= x."""
    order = np.argsort(kl)
    edges, level, area, x = [], sign * floor, 0.0, 0.0
    for i in order:
        k = max(float(kl[i]), 0.0)
        if k >= budget:
            break
        area += level * (k - x)
        x, level = k, max(level, sign * float(metric[i]))
        edges.append(k)
    area += level * (budget - x)
    return sign * area


def markdown_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [x for x in section.splitlines() if x.startswith("|") and "---" not in x]
    return [[c.strip() for c in x.strip("|").split("|")] for x in lines[1:]]


def test_the_summary_reads_the_tasks_direction(run: dict) -> None:
    sft, (dpo, odpo) = rows(run)
    metric, sign, text = run["task"].metric, run["sign"], run["summary"]
    budget = float(re.search(r"area \(KL ≤ ([0-9.]+)\)", text).group(1))
    areas = {r[1]: float(r[4]) for r in markdown_rows(text, "## Frontier per series")}
    for label, row in (("DPO", dpo), ("ODPO (f=log_diff, α=1)", odpo)):
        want = expected_area(np.array([row["kl"]]), np.array([row[metric]]), sft[metric], budget,
                             sign)  # fmt: skip
        assert areas[label] == pytest.approx(want, abs=1.5e-3), (label, areas[label], want)
    # The words say the direction: the runs line, the area's definition, the duel's column.
    better = "higher" if sign > 0 else "lower"
    assert f"{better} {metric} and lower KL are better" in text
    assert f"R(x) is the {'highest' if sign > 0 else 'lowest'} {metric} of the row's runs" in text
    assert f"| ODPO {better} {metric} |" in text
    (duel,) = markdown_rows(text, "against its reference at matched")
    assert duel[0].startswith("ODPO") and duel[1] == "DPO"
    assert int(duel[3]) == int(sign * (odpo[metric] - dpo[metric]) > 0), duel
