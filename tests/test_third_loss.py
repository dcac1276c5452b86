"""A third loss reaches every output: a micro sweep of DPO, ODPO and IPO puts IPO in runs.csv,
the figure's legend and summary.md; the reporting functions handle losses they have never
heard of (``zzz``: no offset, ``yyy``: an offset, neither registered); and no reporting
module names a loss except the baseline, once."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd
import pytest

from pipeline import PROJECT_ROOT
from pipeline.report import plots, runs, study, variants, winrates
from pipeline.report.digest import head_to_head, render_summary
from pipeline.report.runs import COLUMNS
from tests.conftest import ledger, run_cli

REPORT = PROJECT_ROOT / "pipeline" / "report"


def _row(loss, beta, seed, reward, kl, offset="none", alpha=0.0, n_pairs=100) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(loss=loss, beta=beta, seed=seed, reward=reward, kl=kl, kl_exact=kl,
               offset=offset, alpha=alpha, n_pairs=n_pairs, reward_se=0.01)  # fmt: skip
    return row


SFT = {**dict.fromkeys(COLUMNS), "loss": "sft", "reward": 0.6, "reward_se": 0.01, "kl": 0.0}


@pytest.fixture
def table() -> pd.DataFrame:
    """DPO, IPO and two unregistered losses at n_pairs 100; each pair's outcome against the
    DPO run of the same beta and seed in its comment."""
    rows = [
        _row("zzz", 2.0, 0, 0.66, 0.4),  # no DPO run at beta 2
        _row("dpo", 0.5, 0, 0.70, 1.0),
        _row("yyy", 0.5, 0, 0.69, 0.9, "diff", 2.0),  # less reward, less KL: neither
        _row("zzz", 0.5, 1, 0.70, 1.3),  # less reward, more KL: DPO dominates
        SFT,
        _row("ipo", 0.5, 0, 0.70, 1.0),  # the same point: neither
        _row("dpo", 0.5, 1, 0.72, 1.2),
        _row("yyy", 0.5, 0, 0.71, 1.0, "diff", 1.0),  # more reward, same KL: yyy dominates
        _row("zzz", 0.5, 0, 0.75, 0.9),  # more reward, less KL: zzz dominates
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_the_offset_rule_for_unregistered_losses() -> None:
    assert not variants.takes_offset("zzz", ["none", None, math.nan])
    assert variants.takes_offset("yyy", ["none", "diff"])
    # A registered loss is the registry's word, whatever its rows say.
    assert variants.takes_offset("ipo_offset") and not variants.takes_offset("ipo", ["diff"])


def test_sort_puts_sft_then_dpo_then_the_rest_by_name(table: pd.DataFrame) -> None:
    ordered = runs.sort(table)["loss"].tolist()
    assert ordered == ["sft", "dpo", "dpo", "ipo", "yyy", "yyy", "zzz", "zzz", "zzz"]
    yyy = runs.sort(table).query("loss == 'yyy'")
    assert yyy["alpha"].tolist() == [1.0, 2.0]


def test_series_one_per_loss_and_one_per_offset_variant(table: pd.DataFrame) -> None:
    got = plots.series(table[table["loss"] != "sft"])
    labels = [label for label, *_ in got]
    assert labels == ["DPO", "IPO", "YYY (f=diff, α=1)", "YYY (f=diff, α=2)", "ZZZ"]
    assert [len(rows) for _, rows, *_ in got] == [2, 1, 1, 1, 3]
    styles = [(color, marker) for _, _, color, marker in got]
    assert styles[0] == variants.BASE_STYLE and styles[1:] == variants.STYLES[:4]
    # One variant of a loss with an offset is labelled by its name alone.
    one = plots.series(table[table["alpha"] != 2.0].query("loss != 'sft'"))
    assert [label for label, *_ in one] == ["DPO", "IPO", "YYY", "ZZZ"]


def test_head_to_head_compares_every_loss_with_dpo(table: pd.DataFrame) -> None:
    duel = head_to_head(table).set_index("series")
    assert list(duel.index) == ["IPO", "YYY (f=diff, α=1)", "YYY (f=diff, α=2)", "ZZZ"]
    assert set(duel["reference"]) == {"DPO"}
    counts = ["matched", "odpo_better", "odpo_lower_kl", "odpo_dominates", "reference_dominates"]
    assert duel.loc["IPO", counts].tolist() == [1, 0, 0, 0, 0]
    assert duel.loc["YYY (f=diff, α=1)", counts].tolist() == [1, 1, 0, 1, 0]
    assert duel.loc["YYY (f=diff, α=2)", counts].tolist() == [1, 0, 1, 0, 0]
    # zzz at beta 0.5: seed 0 dominates, seed 1 is dominated; beta 2 has no DPO run.
    assert duel.loc["ZZZ", counts].tolist() == [2, 1, 1, 1, 1]
    assert duel.loc["ZZZ", "loss"] == "zzz"


def test_head_to_head_without_dpo_falls_back_to_alpha_zero() -> None:
    rows = [
        SFT,
        _row("yyy", 0.5, 0, 0.70, 1.0, "diff", 0.0),
        _row("yyy", 0.5, 0, 0.72, 1.0, "diff", 1.0),  # more reward, same KL: dominates
        _row("zzz", 0.5, 0, 0.90, 0.1),  # no offset and no DPO: no reference, no row
    ]
    duel = head_to_head(pd.DataFrame(rows, columns=COLUMNS))
    assert duel["series"].tolist() == ["YYY (f=diff, α=1)"]
    assert duel["reference"].tolist() == ["DPO (α = 0)"]
    assert duel[["matched", "odpo_dominates"]].values.tolist() == [[1, 1]]


def test_summary_names_every_series(table: pd.DataFrame) -> None:
    text = render_summary(table, "t")
    assert "| 100 | ZZZ | 3 | 2 |" in text  # frontier: (0.4, 0.66), (0.9, 0.75)
    assert "## Each variant against its reference at matched β, n_pairs and seed" in text
    assert "| ZZZ | DPO | 2 | 1 | 1 | 1 | 1 |" in text
    assert "| YYY (f=diff, α=1) | 100 | 0.5 | 1 | 0.710 [0.710, 0.710] |" in text
    # One loss besides DPO is named in the text, as for ODPO.
    one = render_summary(table[table["loss"].isin(["sft", "dpo", "zzz"])], "t")
    assert "## ZZZ against its reference" in one and "| ZZZ lower KL |" in one


def test_win_rates_of_unregistered_losses(tmp_path: Path) -> None:
    rates = [{"temperature": 0.0, "wins": 3, "n": 10, "win_rate": 0.3}]
    rows = winrates.rows_for({"loss": "sft"}, "offline", rates)
    for loss, offset, alpha in (("dpo", "none", 0.0), ("zzz", "none", 0.0), ("yyy", "diff", 1.0)):
        run = {"loss": loss, "beta": 0.5, "alpha": alpha, "offset": offset, "seed": 0}
        rows += winrates.rows_for(run, "offline", rates)
    assert [r["model"] for r in rows] == ["SFT", "DPO", "ZZZ", "YYY"]
    path = tmp_path / winrates.FILE
    winrates.upsert(path, rows[::-1])
    assert pd.read_csv(path)["model"].tolist() == ["SFT", "DPO", "YYY", "ZZZ"]
    lines = "\n".join(winrates.summary_section(path)).splitlines()
    labels = [line.split(" | ")[0].lstrip("| ") for line in lines if line.startswith("| ")]
    assert labels[2:] == ["SFT", "DPO β=0.5", "YYY β=0.5, f=diff, α=1", "ZZZ β=0.5"]
    winrates.draw(path, tmp_path / winrates.FIGURE, "t", "")  # a style for every model


def _seeds(loss: str, gain: float, **extra) -> list[dict]:
    return [_row(loss, 1.0, s, 0.7 + gain, 1.0, **extra) for s in (0, 1, 2)]


def test_study_compares_each_loss_with_dpo(tmp_path: Path) -> None:
    out = tmp_path / "study"
    (out / "small").mkdir(parents=True)
    rows = [SFT, *_seeds("dpo", 0.0), *_seeds("zzz", 0.05), *_seeds("odpo", -0.02, offset="diff", alpha=1.0)]  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS).to_csv(out / "small" / "runs.csv", index=False)
    assert study.run(out, cache_dir=None)
    assert study.outputs(["odpo", "zzz"]) == [
        "study_odpo.csv", "per_seed_odpo.csv", "study_zzz.csv", "per_seed_zzz.csv",
        "odpo_vs_dpo.png", "zzz_vs_dpo.png", "summary.md",
    ]  # fmt: skip
    for name in study.outputs(["odpo", "zzz"]):
        assert (out / name).is_file(), name
    zzz = pd.read_csv(out / "study_zzz.csv").iloc[0]
    # zzz's area exceeds DPO's by 0.05 * (budget 2 - KL 1) on every seed
    assert zzz["diff"] == pytest.approx(0.05) and zzz["zzz_better"] == 3
    assert pd.isna(zzz["alpha"]) and zzz["offset"] == "none"
    text = (out / "summary.md").read_text()
    assert (
        "# Study: when does ODPO beat DPO?" in text and "# Study: when does ZZZ beat DPO?" in text
    )
    assert "| small, 100 pairs | 3 |" in text  # no f or α for a loss without an offset


# ---- no reporting module names a loss -------------------------------------------------


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, value) of every string constant that is not a docstring."""
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_no_reporting_module_names_a_loss() -> None:
    names = {"dpo", "odpo", "ipo", "ipo_offset"}
    found = []
    for path in sorted(REPORT.glob("*.py")):
        for line, value in _strings(ast.parse(path.read_text())):
            words = {w.lower() for w in value.replace("(", " ").replace("?", " ").split()}
            if value.lower() in names or words & (names - {"dpo"}):
                found.append((path.name, line, value))
    # DPO is the baseline, named once.
    assert [(name, value) for name, _, value in found] == [("variants.py", "dpo")], found
    assert variants.BASELINE == "dpo"


# ---- end to end: a micro sweep with a third loss ---------------------------------------


def test_micro_sweep_with_ipo_reaches_every_output(tmp_path: Path, monkeypatch) -> None:
    done = run_cli(["-m", "loss=dpo,odpo,ipo"], tmp_path)
    assert "[plot]" in done.stdout
    results = tmp_path / "results"
    table = pd.read_csv(results / "runs.csv")
    assert table["loss"].tolist() == ["sft", "dpo", "ipo", "odpo"]
    ipo = table[table["loss"] == "ipo"].iloc[0]
    assert ipo["offset"] == "none" and ipo["alpha"] == 0 and ipo["n_pairs"] == 60
    assert 0 <= ipo["reward"] <= 1 and ipo["kl"] >= 0 and ipo["kl_exact"] >= 0
    assert sum(e["stage"] == "train" and e["status"] == "computed" for e in ledger(tmp_path)) == 3

    summary = (results / "summary.md").read_text()
    assert "| 60 | IPO | 1 | 1 |" in summary
    assert "| IPO | DPO | 1 |" in summary and "### IPO, n_pairs = 60" in summary

    drawn = []

    def keep(fig, out: Path) -> Path:  # the figure the sweep drew, before it is closed
        drawn.append(fig)
        return out

    monkeypatch.setattr(plots, "_save", keep)
    plots.reward_vs_kl(results / "runs.csv", tmp_path / "again.png")
    legend = [t.get_text() for t in drawn[0].axes[0].get_legend().get_texts()]
    assert legend == [
        "SFT",
        "DPO (seed mean, range)",
        "IPO (seed mean, range)",
        "ODPO (seed mean, range)",
    ]
    assert (results / "reward_vs_kl.png").stat().st_size > 0
