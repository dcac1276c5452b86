"""task=summarize end to end at the micro scale (the paper's data path on small synthetic
files: Reddit-TL;DR-shaped posts and summarize_from_feedback-shaped ratings): pairs from
ratings counted independently, win rates per temperature with the offline judge and with
judge=openai over real HTTP (a fake endpoint on 127.0.0.1: a rate limit, a malformed
answer), and a second run that recomputes nothing and calls no judge."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from pipeline import PROJECT_ROOT
from pipeline.corpora import tldr as summary_data
from pipeline.report import winrates
from pipeline.report.figures import plot_results
from pipeline.tasks.summarize import TASK
from tests.conftest import ledger, run_in_process
from tests.test_judges import FakeEndpoint, endpoint  # noqa: F401 - the fixture

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "summarize_micro"
TEMPERATURES = [0.0, 0.25, 0.5, 0.75, 1.0]


def _independent_pair_count(path: Path) -> int:
    """Pairs with different ratings among each post's distinct summaries, by brute force
    over the raw JSON (a summary rated twice is one summary, its ratings averaged)."""
    by_post: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in path.read_text().splitlines():
        row = json.loads(line)
        by_post[row["info"]["id"]][row["summary"]["text"]].append(row["summary"]["axes"]["overall"])
    count = 0
    for summaries in by_post.values():
        means = [sum(r) / len(r) for r in summaries.values()]
        count += sum(a != b for a, b in itertools.combinations(means, 2))
    return count


def test_fixture_has_posts_of_different_sizes_and_ties() -> None:
    sizes = defaultdict(list)
    for line in (FIXTURES / "feedback.jsonl").read_text().splitlines():
        row = json.loads(line)
        sizes[row["info"]["id"]].append(row["summary"]["axes"]["overall"])
    assert {len(r) for r in sizes.values()} == {1, 2, 3, 4, 5}
    assert any(len(set(r)) < len(r) for r in sizes.values())  # tied ratings
    assert _independent_pair_count(FIXTURES / "feedback.jsonl") == 86


def test_prompt_keeps_tldr_when_the_article_is_cut(tmp_path: Path) -> None:
    from pipeline.modeling import models

    tok = models.train_bpe_tokenizer(["a long article about many things " * 20], 300)
    long_text = summary_data.tldr_prompt("word " * 200)
    ids = TASK.prompt_ids(tok, [long_text, summary_data.tldr_prompt("short")], 30)
    suffix = tok(summary_data.TLDR, add_special_tokens=False)["input_ids"]
    assert len(ids[0]) == 1 + 30  # BOS + the budget, the suffix inside it
    for row in ids:
        assert row[-len(suffix) :] == suffix
        assert row[0] == models.bos_id(tok)


def _win_rates(tmp: Path) -> pd.DataFrame:
    return pd.read_csv(tmp / "results" / winrates.FILE)


def test_micro_end_to_end_offline_judge(tmp_path: Path) -> None:
    done = run_in_process(["experiment=summarize"], tmp_path)
    assert done.returncode == 0, done.stderr
    # Every pair of differently rated summaries, once: the independent count.
    assert "86 pairs available, kept 40" in done.stdout
    table = _win_rates(tmp_path)
    assert set(winrates.COLUMNS) <= set(table.columns)
    assert sorted(table["model"].unique()) == ["ODPO", "SFT"]
    for _, part in table.groupby("model"):
        assert sorted(part["temperature"]) == TEMPERATURES
    assert (table["n"] == 16).all() and (table["judge"] == "offline").all()
    assert ((table["win_rate"] - table["wins"] / table["n"]).abs() < 1e-12).all()
    assert ((table["ci_low"] <= table["win_rate"]) & (table["win_rate"] <= table["ci_high"])).all()
    runs = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert {"rating", "rating_se", "kl"} <= set(runs.columns)
    judged = [r for r in ledger(tmp_path) if r["stage"] == "judge"]
    assert [r["status"] for r in judged] == ["computed", "computed"]  # SFT, then the policy

    before = len(ledger(tmp_path))
    again = run_in_process(["experiment=summarize"], tmp_path)
    assert again.returncode == 0, again.stderr
    second = ledger(tmp_path)[before:]
    assert [r["status"] for r in second if r["stage"] == "judge"] == ["reused", "reused"]
    assert {r["status"] for r in second} == {"reused"}
    pd.testing.assert_frame_equal(_win_rates(tmp_path), table)


def test_micro_end_to_end_openai_judge(tmp_path: Path, endpoint: FakeEndpoint) -> None:  # noqa: F811
    """judge=openai against a fake endpoint: the first request is rate-limited (429, then
    retried), one answer is malformed (counted, never guessed); a re-run calls nothing."""
    answered = {"n": 0}
    real = endpoint.answer

    def scripted(path: str, body: dict) -> tuple[int, dict]:
        answered["n"] += 1
        if answered["n"] == 1:
            return 429, {"error": {"message": "slow down"}}
        status, payload = real(path, body)
        if answered["n"] == 3:
            payload["choices"][0]["message"]["content"] = "Both are fine, really."
        return status, payload

    endpoint.answer = scripted  # type: ignore[method-assign]
    args = ["experiment=summarize", "judge=openai", "judge.backoff_s=0.01",
            "judge.max_backoff_s=0.05", "judge.concurrency=2"]  # fmt: skip
    done = run_in_process(args, tmp_path)
    assert done.returncode == 0, done.stderr
    announced = [line for line in done.stdout.splitlines() if " comparisons, " in line]
    assert len(announced) == 10  # SFT and the policy, 5 temperatures each, announced first
    assert announced[0].startswith("judge openai: 16 comparisons, 0 cached, 16 calls")
    table = _win_rates(tmp_path)
    assert (table["judge"] == "openai").all()
    assert int(table["unparseable"].sum()) == 1
    assert int(table["retries"].sum()) >= 1
    made = len(endpoint.requests)
    assert made == int(table["calls"].sum()) + int(table["retries"].sum())
    spec = {"kind": "reward_vs_kl", "title": "Summarization", "task": "summarize"}
    plot_results(tmp_path / "results", tmp_path / "cache", spec)  # what the sweep's end draws
    assert (tmp_path / "results" / winrates.FIGURE).is_file()
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "unparseable answers (left out of n): 1" in summary

    again = run_in_process(args, tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(endpoint.requests) == made  # nothing asked again
    # The key reached the server and nowhere else.
    key = endpoint.key
    assert any(key in a for a in endpoint.auth)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="ignore"), path
    assert key not in done.stdout + done.stderr + again.stdout + again.stderr


@pytest.mark.parametrize("scale", ["micro", "embedded", "paper"])
def test_summarize_composes_and_validates_offline(scale: str, monkeypatch) -> None:
    """Every scale's summarize config composes; micro and embedded validate without a
    network (the paper scale's data and model are the hub's)."""
    from hydra import compose, initialize_config_dir

    from pipeline.orchestration.validate import validate

    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", ["experiment=summarize", f"scale={scale}", "judge=openai"])
    assert cfg.judge.name == "openai" and cfg.loss.beta == 0.5
    assert list(cfg.task.temperatures) == TEMPERATURES
    if scale == "paper":
        assert cfg.scale.model.pretrained == "EleutherAI/gpt-j-6b"
        assert cfg.scale.train.optimizer == "rmsprop" and cfg.scale.train.warmup_steps == 150
        assert cfg.scale.train.batch_size == 16 and cfg.scale.train.max_grad_norm == 10
        assert cfg.data.feedback == "openai/summarize_from_feedback"
    else:
        monkeypatch.setattr("pipeline.orchestration.validate._device", lambda cfg: None)
        validate(cfg)
