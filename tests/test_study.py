"""The study "when does ODPO beat DPO?" (pipeline/report/study.py): the bootstrap interval, the
per-seed frontier areas on hand-worked tables, the per-setting comparison, reuse on a
second call, and the study's sweeps composing as `make study` runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import PROJECT_ROOT
from pipeline.report import study
from pipeline.report.runs import COLUMNS

SFT_REWARD = 0.5


def _row(loss, beta, kl, reward, seed=0, n_pairs=1000, offset="log_diff", alpha=1.0) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(loss=loss, beta=beta, kl=kl, reward=reward, seed=seed, n_pairs=n_pairs)
    if loss == "odpo":
        row.update(offset=offset, alpha=alpha)
    return row


def _sft() -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(loss="sft", reward=SFT_REWARD, kl=0.0)
    return row


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([_sft(), *rows], columns=COLUMNS)


# ---- the bootstrap ---------------------------------------------------------------------


def test_bootstrap_of_constant_values_is_that_value() -> None:
    assert study.bootstrap_ci(np.array([0.2, 0.2, 0.2])) == pytest.approx((0.2, 0.2))


def test_bootstrap_of_two_values_spans_them() -> None:
    # Resampled means of {0, 1}: 0 (p 1/4), 0.5 (1/2), 1 (1/4): the 2.5% and 97.5% points.
    assert study.bootstrap_ci(np.array([0.0, 1.0])) == (0.0, 1.0)


def test_bootstrap_interval_holds_the_mean_and_narrows_with_agreement() -> None:
    spread = np.array([-0.3, 0.1, 0.5])
    low, high = study.bootstrap_ci(spread)
    assert low < spread.mean() < high
    assert low >= spread.min() and high <= spread.max()
    tight_low, tight_high = study.bootstrap_ci(np.array([0.09, 0.1, 0.11]))
    assert tight_high - tight_low < (high - low) / 10


@pytest.mark.parametrize(("level", "z"), [(0.95, 1.959964), (0.5, 0.674490)])
def test_bootstrap_interval_has_the_level_it_is_labelled_with(level: float, z: float) -> None:
    # 400 values: the bootstrap distribution of the mean is close to normal with standard
    # error s / sqrt(n), so the interval's half-width is z(level) times that, within a few %.
    values = np.random.default_rng(3).normal(0.0, 1.0, 400)
    low, high = study.bootstrap_ci(values, level=level)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert (high - low) / 2 == pytest.approx(z * se, rel=0.06)
    assert low < values.mean() < high
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.1 * se)
    default_low, default_high = study.bootstrap_ci(values)
    if level == 0.95:  # the study's tables call it with the default: 95%
        assert (default_low, default_high) == (low, high)


def test_bootstrap_of_nothing_is_nan() -> None:
    low, high = study.bootstrap_ci(np.array([]))
    assert np.isnan(low) and np.isnan(high)


# ---- areas and the comparison ----------------------------------------------------------


def test_seed_areas_by_hand() -> None:
    # Budget 2, floor 0.5.
    # DPO: (0.5, 0.7), (1.5, 0.8) -> 0.5*0.5 + 1.0*0.7 + 0.5*0.8 = 1.35
    # ODPO: (1.0, 0.9), (2.5, 0.95; past the budget) -> 1.0*0.5 + 1.0*0.9 = 1.4
    table = _table(
        [
            _row("dpo", 1, 0.5, 0.7),
            _row("dpo", 0.1, 1.5, 0.8),
            _row("odpo", 1, 1.0, 0.9),
            _row("odpo", 0.1, 2.5, 0.95),
        ]
    )
    areas = study.seed_areas(table, budget=2.0)
    by_loss = dict(zip(areas["loss"], areas["area"], strict=True))
    assert by_loss == pytest.approx({"dpo": 1.35, "odpo": 1.4})
    assert areas["runs"].tolist() == [2, 2]


def test_seed_areas_need_the_sft_floor() -> None:
    table = pd.DataFrame([_row("dpo", 1, 0.5, 0.7)], columns=COLUMNS)
    with pytest.raises(ValueError, match="SFT"):
        study.seed_areas(table, budget=2.0)


def _three_seeds(gain: dict[int, float], n_pairs: int = 1000, alpha: float = 1.0) -> list[dict]:
    """Per seed one DPO run at (1.0, 0.7) and one ODPO run at (1.0, 0.7 + gain): the ODPO
    area exceeds DPO's by gain * (budget 2 - KL 1) = gain."""
    rows = []
    for seed, g in gain.items():
        rows += [
            _row("dpo", 1, 1.0, 0.7, seed=seed, n_pairs=n_pairs),
            _row("odpo", 1, 1.0, 0.7 + g, seed=seed, n_pairs=n_pairs, alpha=alpha),
        ]
    return rows


def test_compare_per_setting() -> None:
    small = _table(
        _three_seeds({0: 0.05, 1: 0.06, 2: 0.04})  # consistently better: significant
        + _three_seeds({0: 0.05, 1: -0.05, 2: 0.0}, n_pairs=5000)  # mixed: not significant
        + [_row("odpo", 1, 1.0, 0.9, seed=0, n_pairs=2500)]  # no DPO at 2500: no setting
    )
    large = _table(_three_seeds({0: -0.02, 1: -0.03, 2: -0.01}, alpha=2.0))
    settings, per_seed = study.compare({"small": small, "large": large}, budget=2.0)
    assert len(settings) == 3 and len(per_seed) == 9
    rows = {(r.capacity, r.n_pairs, r.alpha): r for r in settings.itertuples()}
    better = rows[("small", 1000, 1.0)]
    assert better.diff == pytest.approx(0.05) and better.seeds == 3
    assert better.significant and better.ci_low > 0
    assert better.matched == 3 and better.odpo_better == 3 and better.odpo_dominates == 3
    mixed = rows[("small", 5000, 1.0)]
    assert mixed.diff == pytest.approx(0.0, abs=1e-12) and not mixed.significant
    assert mixed.odpo_better == 1 and mixed.dpo_dominates == 1
    worse = rows[("large", 1000, 2.0)]
    assert worse.diff == pytest.approx(-0.02) and worse.significant and worse.ci_high < 0
    assert worse.dpo_dominates == 3
    seeds = per_seed[(per_seed["capacity"] == "small") & (per_seed["n_pairs"] == 1000)]
    assert seeds.sort_values("seed")["diff"].tolist() == pytest.approx([0.05, 0.06, 0.04])


def test_run_writes_then_reuses(tmp_path: Path) -> None:
    out = tmp_path / "study"
    (out / "small").mkdir(parents=True)
    table = _table(_three_seeds({0: 0.05, 1: 0.06, 2: 0.04}))
    table.to_csv(out / "small" / "runs.csv", index=False)
    cache = tmp_path / "cache"
    assert study.run(out, cache_dir=cache) is True
    assert study.outputs(["odpo"]) == ["study.csv", "per_seed.csv", "odpo_vs_dpo.png", "summary.md"]
    for name in study.outputs(["odpo"]):
        assert (out / name).is_file(), name
    text = (out / "summary.md").read_text()
    assert "significantly above DPO's in 1" in text and "stand-in" in text
    # Nothing changed: nothing recomputed, and the ledger says so.
    assert study.run(out, cache_dir=cache) is False
    ledger = [json.loads(line) for line in (cache / "ledger.jsonl").read_text().splitlines()]
    assert [r["status"] for r in ledger if r["stage"] == "study"] == ["computed", "reused"]
    # A changed table is a new study.
    table.loc[table["loss"] == "odpo", "reward"] -= 0.1
    table.to_csv(out / "small" / "runs.csv", index=False)
    assert study.run(out, cache_dir=cache) is True
    assert "significantly below in 1" in (out / "summary.md").read_text()


def test_study_sweeps_compose_as_make_study_runs_them() -> None:
    """Every block `make study` names exists and writes into one study folder; the three
    blocks of the embedded model share one table (one configuration), the larger model
    has its own, 6x the parameters."""
    from hydra import compose, initialize_config_dir

    makefile = (PROJECT_ROOT / "Makefile").read_text()
    blocks = makefile.split("for block in ", 1)[1].split(";", 1)[0].split()
    assert blocks == ["small", "alpha", "diff", "large"]
    folders, models, runs = {}, {}, 0
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        for block in blocks:
            cfg = compose("config", [f"experiment=study_{block}"], return_hydra_config=True)
            folders[block] = Path(cfg.results_dir).relative_to(PROJECT_ROOT).as_posix()
            models[block] = (cfg.scale.model.n_layer, cfg.scale.model.n_embd)
            params = cfg.hydra.sweeper.params
            assert params["seed"] == "0,1,2"  # at least 3 seeds everywhere
            n = 1
            for values in params.values():
                n *= len(str(values).split(","))
            runs += n
    assert runs == 288
    assert {folders[b] for b in ("small", "alpha", "diff")} == {"results/studies/odpo_vs_dpo/small"}
    assert folders["large"] == "results/studies/odpo_vs_dpo/large"
    from pipeline.modeling.models import small_gpt2

    def size(layers_width) -> int:
        layers, width = layers_width
        return sum(
            p.numel() for p in small_gpt2(1024, layers, width, 4, n_positions=64).parameters()
        )

    ratio = size(models["large"]) / size(models["small"])
    assert 5 <= ratio <= 10
