"""The study "when does a loss beat DPO?": per setting (model capacity, data size and, for a
loss with an offset, offset function f and scale α), the difference in area under the
reward-vs-KL frontier, the loss minus the baseline (DPO), with a bootstrap 95% interval over
seeds, and the head-to-head at matched β. Every loss of the tables other than the baseline
is compared with it (today's study: ODPO).

``make study`` runs the study's sweeps (conf/experiment/study_*.yaml), each writing a run
table under ``results/studies/odpo_vs_dpo/<capacity>/``, then
``python -m pipeline.report.study results/studies/odpo_vs_dpo`` writes, beside those folders,
for tables with one loss L besides the baseline: ``study.csv`` (one row per setting),
``per_seed.csv`` (each seed's two areas), ``<L>_vs_dpo.png`` (the differences with their
intervals, one row per setting, ``pipeline.report.study_views``) and ``summary.md``. With
several such losses each has its ``study_<L>.csv``, ``per_seed_<L>.csv`` and figure, and
``summary.md`` one part per loss. A second call with unchanged tables recomputes nothing (the
ledger records ``study ... reused``).

How a setting is measured. For one seed, the baseline's runs over the β grid form one
frontier and the variant's runs another (same SFT model, sample set and pairs: the seed pairs
them). Each area is ∫_0^B R(x) dx with R the best reward of a run with KL ≤ x, never below
the SFT reward (``pipeline.math.frontier.frontier_area``). The setting's difference is the
mean over seeds of (variant area − baseline area); its interval is the 2.5 and 97.5
percentiles of that mean over seeds resampled with replacement. With 3 seeds the bootstrap
has only 10 distinct means, so the interval is coarse and, if anything, too narrow: a
difference is called significant only when the interval excludes 0, and the per-seed values
are in ``per_seed.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.infra.cache import Cache, atomic_write_text, file_sha256, stable_hash
from pipeline.math.frontier import frontier_area
from pipeline.math.stats import bootstrap_ci
from pipeline.report.digest import head_to_head, training_runs
from pipeline.report.runs import as_reward, read, read_fingerprint
from pipeline.report.study_views import draw, figure_name, render
from pipeline.report.variants import BASELINE, SFT, display, others, takes_offset

# Bump when the outputs change for the same tables (part of the reuse key).
VERSION = (
    4  # 3: no interval (and not significant) from a single seed; 4: the seeds it has in its note
)
STAMP = ".study_key"
SETTING = ["capacity", "n_pairs", "offset", "alpha"]


def outputs(losses: list[str]) -> list[str]:
    """The files the study writes for the losses it compares with the baseline."""
    if len(losses) == 1:
        return ["study.csv", "per_seed.csv", figure_name(losses[0]), "summary.md"]
    names = [f"{kind}_{loss}.csv" for loss in losses for kind in ("study", "per_seed")]
    return names + [figure_name(loss) for loss in losses] + ["summary.md"]


def table_names(losses: list[str], loss: str) -> tuple[str, str]:
    """(study table, per-seed table) of ``loss`` among the study's ``losses``."""
    if len(losses) == 1:
        return "study.csv", "per_seed.csv"
    return f"study_{loss}.csv", f"per_seed_{loss}.csv"


def capacity_label(results_dir: Path) -> str:
    """'<layers>-layer, <width>-wide' from a table's fingerprint (the folder name if none)."""
    fp = read_fingerprint(results_dir)
    settings = (fp or {}).get("settings", {})
    if settings.get("model.name"):  # a model file's model (model=smollm2): its name
        return str(settings["model.name"])
    layers, width = settings.get("scale.model.n_layer"), settings.get("scale.model.n_embd")
    if layers is None or width is None:
        return results_dir.name
    return f"{layers}-layer, {width}-wide"


def _model_size(results_dir: Path) -> tuple[float, str]:
    settings = (read_fingerprint(results_dir) or {}).get("settings", {})
    layers, width = settings.get("scale.model.n_layer"), settings.get("scale.model.n_embd")
    size = layers * width * width if layers is not None and width is not None else float("inf")
    if settings.get("model.name"):  # a pretrained model: after every embedded size
        size = float("inf")
    return size, results_dir.name


def _with_offset(trained: pd.DataFrame) -> set[str]:
    """The losses of ``trained`` that take an offset (``variants.takes_offset``)."""
    return {str(k) for k, g in trained.groupby("loss") if takes_offset(k, g["offset"])}


def seed_areas(runs: pd.DataFrame, budget: float) -> pd.DataFrame:
    """Area under each (n_pairs, loss, offset, alpha, seed) frontier up to KL ``budget``,
    with the table's SFT reward as the floor. alpha is NaN for a loss without an offset."""
    runs = as_reward(runs, "reward")  # the sentiment study's metric
    sft = runs[runs["loss"] == SFT]
    if sft.empty:
        raise ValueError("the run table has no SFT baseline row: no floor for the areas")
    floor = float(sft["reward"].iloc[0])
    trained = training_runs(runs)
    keys = ["n_pairs", "loss", "offset", "alpha", "seed"]
    trained["alpha"] = trained["alpha"].where(trained["loss"].isin(_with_offset(trained)), np.nan)
    rows = []
    for key, group in trained.groupby(keys, dropna=False, sort=True):
        area = frontier_area(group["kl"].to_numpy(), group["reward"].to_numpy(), budget, floor)
        rows.append(dict(zip(keys, key, strict=True), area=area, runs=len(group)))
    return pd.DataFrame(rows, columns=[*keys, "area", "runs"])


def _setting(capacity, n_pairs, offset, alpha, both, n_boot, h2h, loss) -> dict:
    """One row of the study table: the two mean areas, their difference with its interval,
    and the head-to-head counts at matched β and seed."""
    b, v = BASELINE, loss
    diff = (both[f"area_{v}"] - both[f"area_{b}"]).to_numpy()
    low, high = bootstrap_ci(diff, n_boot)
    return {
        "capacity": capacity,
        "n_pairs": int(n_pairs),
        "offset": offset,
        "alpha": float(alpha),
        "seeds": len(both),
        f"area_{b}": float(both[f"area_{b}"].mean()),
        f"area_{v}": float(both[f"area_{v}"].mean()),
        "diff": float(diff.mean()),
        "ci_low": low,
        "ci_high": high,
        "significant": bool(low > 0 or high < 0),  # False with no interval (NaN)
        "matched": int(h2h["matched"]),
        f"{v}_better": int(h2h["odpo_better"]),
        f"{v}_lower_kl": int(h2h["odpo_lower_kl"]),
        f"{v}_dominates": int(h2h["odpo_dominates"]),
        f"{b}_dominates": int(h2h["reference_dominates"]),
    }


def compare(
    tables: dict[str, pd.DataFrame], budget: float, n_boot: int = 10_000, loss: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per setting, one row per setting and seed) for run tables keyed by
    capacity. A setting is a variant of ``loss`` (default: the tables' only loss besides the
    baseline) at one size, compared with the baseline's runs of the same table and size on
    the seeds both have."""
    if loss is None:
        losses = others(pd.concat([t["loss"] for t in tables.values()]))
        if len(losses) != 1:
            raise ValueError(f"compare: name the loss to compare, one of {losses}")
        loss = losses[0]
    b, v = BASELINE, loss
    settings, per_seed = [], []
    for capacity, runs in tables.items():
        areas = seed_areas(runs, budget)
        trained = training_runs(runs)
        shifted = v in _with_offset(trained)
        mine = areas[areas["loss"] == v]
        for (n_pairs, offset, alpha), part in mine.groupby(
            ["n_pairs", "offset", "alpha"], sort=True, dropna=False
        ):
            base = areas[(areas["loss"] == b) & (areas["n_pairs"] == n_pairs)]
            both = part.merge(base, on="seed", suffixes=(f"_{v}", f"_{b}"))
            if both.empty:
                continue
            at_size = trained[trained["n_pairs"] == n_pairs]
            ours = at_size["loss"] == v
            if shifted:
                ours &= (at_size["offset"] == offset) & (at_size["alpha"] == alpha)
            h2h = head_to_head(at_size[(at_size["loss"] == b) | ours]).iloc[0]
            settings.append(_setting(capacity, n_pairs, offset, alpha, both, n_boot, h2h, v))
            for _, row in both.iterrows():
                per_seed.append(
                    {
                        "capacity": capacity,
                        "n_pairs": int(n_pairs),
                        "offset": offset,
                        "alpha": float(alpha),
                        "seed": int(row["seed"]),
                        f"area_{b}": row[f"area_{b}"],
                        f"area_{v}": row[f"area_{v}"],
                        "diff": row[f"area_{v}"] - row[f"area_{b}"],
                    }
                )
    return pd.DataFrame(settings), pd.DataFrame(per_seed)


def _tables(out: Path) -> list[Path]:
    folders = sorted(p.parent for p in out.glob("*/runs.csv"))
    if not folders:
        raise SystemExit(f"error: no run tables in {out}/*/runs.csv; run `make study` first")
    return folders


def study_losses(out: Path) -> list[str]:
    """The losses of the study's tables other than the baseline, by name."""
    return others(pd.concat([read(p / "runs.csv")["loss"] for p in _tables(out)]))


def run(
    out: Path, budget: float = 2.0, n_boot: int = 10_000, cache_dir: Path | None = None
) -> bool:
    """Write the study's outputs from the run tables in ``out``'s sub-folders; False (and
    nothing written) when they are already up to date with those tables."""
    start = time.perf_counter()
    folders = _tables(out)
    key = stable_hash(
        {
            "tables": {p.name: file_sha256(p / "runs.csv") for p in folders},
            "budget": budget,
            "n_boot": n_boot,
            "v": VERSION,
        }
    )[:16]
    ledger = Cache(cache_dir) if cache_dir is not None else None
    stamp = out / STAMP
    done = stamp.is_file() and stamp.read_text().strip() == key
    losses = study_losses(out)
    if done and all((out / name).is_file() for name in outputs(losses)):
        if ledger is not None:
            ledger.record("study", key, "reused", time.perf_counter() - start)
        print(f"[study] {out}: up to date with its {len(folders)} tables (reused)")
        return False
    folders.sort(key=_model_size)  # the smaller model's settings first
    tables = {capacity_label(p): read(p / "runs.csv") for p in folders}
    if not losses:
        raise SystemExit(f"error: no loss but {display(BASELINE)} in the tables of {out}")
    parts, n_settings, significant = [], 0, 0
    for loss in losses:
        study, per_seed = compare(tables, budget, n_boot, loss)
        if study.empty:
            raise SystemExit(
                f"error: no setting in {out} has both {display(BASELINE)} and {display(loss)} runs"
            )
        names = table_names(losses, loss)
        atomic_write_text(out / names[0], study.to_csv(index=False))
        atomic_write_text(out / names[1], per_seed.to_csv(index=False))
        shifted = takes_offset(loss, study["offset"])
        draw(study, per_seed, out / figure_name(loss), budget, loss, shifted)
        parts.append(render(study, budget, n_boot, loss, names[1]))
        n_settings, significant = (
            n_settings + len(study),
            significant + int(study["significant"].sum()),
        )
    atomic_write_text(out / "summary.md", "\n".join(parts))
    atomic_write_text(stamp, key + "\n")
    if ledger is not None:
        ledger.record("study", key, "computed", time.perf_counter() - start)
    print(f"[study] {n_settings} settings, {significant} with an interval excluding 0 -> {out}")
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report.study", description=__doc__)
    parser.add_argument("out", type=Path, nargs="?", default=Path("results/studies/odpo_vs_dpo"))
    parser.add_argument("--kl-budget", type=float, default=2.0, help="area up to this KL")
    parser.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/pipeline"),
                        help="whose ledger records the study")  # fmt: skip
    args = parser.parse_args(argv)
    run(args.out, args.kl_budget, args.n_boot, args.cache_dir)
    names = outputs(study_losses(args.out))
    print(json.dumps({"outputs": [str(args.out / n) for n in names]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
