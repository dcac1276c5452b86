"""The study "when does ODPO beat DPO?": per setting (model capacity, data size, offset
function f, scale α), the difference in area under the reward-vs-KL frontier, ODPO minus
DPO, with a bootstrap 95% interval over seeds, and the head-to-head at matched β.

``make study`` runs the study's sweeps (conf/experiment/study_*.yaml), each writing a run
table under ``results/studies/odpo_vs_dpo/<capacity>/``, then
``python -m pipeline.report.study results/studies/odpo_vs_dpo`` writes, beside those folders:
``study.csv`` (one row per setting), ``per_seed.csv`` (each seed's two areas),
``odpo_vs_dpo.png`` (the differences with their intervals, one row per setting) and
``summary.md``. A second call with unchanged tables recomputes nothing (the ledger records
``study ... reused``).

How a setting is measured. For one seed, DPO's runs over the β grid form one frontier and
the variant's runs another (same SFT model, sample set and pairs: the seed pairs them). Each
area is ∫_0^B R(x) dx with R the best reward of a run with KL ≤ x, never below the SFT
reward (``pipeline.math.frontier.frontier_area``). The setting's difference is the mean over seeds
of (ODPO area − DPO area); its interval is the 2.5 and 97.5 percentiles of that mean over
seeds resampled with replacement. With 3 seeds the bootstrap has only 10 distinct means, so
the interval is coarse and, if anything, too narrow: a difference is called significant only
when the interval excludes 0, and the per-seed values are in ``per_seed.csv``.
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
from pipeline.report.digest import head_to_head, training_runs
from pipeline.report.markdown import markdown_table, num
from pipeline.report.runs import as_reward, read, read_fingerprint

# Bump when the outputs change for the same tables (part of the reuse key).
VERSION = 2
STAMP = ".study_key"
OUTPUTS = ("study.csv", "per_seed.csv", "odpo_vs_dpo.png", "summary.md")
SETTING = ["capacity", "n_pairs", "offset", "alpha"]


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement).
    NaN for no values."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def capacity_label(results_dir: Path) -> str:
    """'<layers>-layer, <width>-wide' from a table's fingerprint (the folder name if none)."""
    fp = read_fingerprint(results_dir)
    settings = (fp or {}).get("settings", {})
    layers, width = settings.get("scale.model.n_layer"), settings.get("scale.model.n_embd")
    if layers is None or width is None:
        return results_dir.name
    return f"{layers}-layer, {width}-wide"


def _model_size(results_dir: Path) -> tuple[float, str]:
    settings = (read_fingerprint(results_dir) or {}).get("settings", {})
    layers, width = settings.get("scale.model.n_layer"), settings.get("scale.model.n_embd")
    size = layers * width * width if layers is not None and width is not None else float("inf")
    return size, results_dir.name


def seed_areas(runs: pd.DataFrame, budget: float) -> pd.DataFrame:
    """Area under each (n_pairs, loss, offset, alpha, seed) frontier up to KL ``budget``,
    with the table's SFT reward as the floor."""
    runs = as_reward(runs, "reward")  # the sentiment study's metric
    sft = runs[runs["loss"] == "sft"]
    if sft.empty:
        raise ValueError("the run table has no SFT baseline row: no floor for the areas")
    floor = float(sft["reward"].iloc[0])
    trained = training_runs(runs)
    keys = ["n_pairs", "loss", "offset", "alpha", "seed"]
    trained["alpha"] = trained["alpha"].where(trained["loss"] != "dpo", np.nan)
    rows = []
    for key, group in trained.groupby(keys, dropna=False, sort=True):
        area = frontier_area(group["kl"].to_numpy(), group["reward"].to_numpy(), budget, floor)
        rows.append(dict(zip(keys, key, strict=True), area=area, runs=len(group)))
    return pd.DataFrame(rows, columns=[*keys, "area", "runs"])


def compare(
    tables: dict[str, pd.DataFrame], budget: float, n_boot: int = 10_000
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per setting, one row per setting and seed) for run tables keyed by
    capacity. A setting is an ODPO variant at one size, compared with the DPO runs of the
    same table and size on the seeds both have."""
    settings, per_seed = [], []
    for capacity, runs in tables.items():
        areas = seed_areas(runs, budget)
        trained = training_runs(runs)
        for (n_pairs, offset, alpha), odpo in areas[areas["loss"] == "odpo"].groupby(
            ["n_pairs", "offset", "alpha"], sort=True
        ):
            dpo = areas[(areas["loss"] == "dpo") & (areas["n_pairs"] == n_pairs)]
            both = odpo.merge(dpo, on="seed", suffixes=("_odpo", "_dpo"))
            if both.empty:
                continue
            diff = (both["area_odpo"] - both["area_dpo"]).to_numpy()
            low, high = bootstrap_ci(diff, n_boot)
            at_size = trained[trained["n_pairs"] == n_pairs]
            variant = at_size[
                (at_size["loss"] == "dpo")
                | ((at_size["offset"] == offset) & (at_size["alpha"] == alpha))
            ]
            h2h = head_to_head(variant).iloc[0]
            settings.append(
                {
                    "capacity": capacity,
                    "n_pairs": int(n_pairs),
                    "offset": offset,
                    "alpha": float(alpha),
                    "seeds": len(both),
                    "area_dpo": float(both["area_dpo"].mean()),
                    "area_odpo": float(both["area_odpo"].mean()),
                    "diff": float(diff.mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "significant": bool(low > 0 or high < 0),
                    "matched": int(h2h["matched"]),
                    "odpo_better": int(h2h["odpo_better"]),
                    "odpo_lower_kl": int(h2h["odpo_lower_kl"]),
                    "odpo_dominates": int(h2h["odpo_dominates"]),
                    "dpo_dominates": int(h2h["reference_dominates"]),
                }
            )
            for _, row in both.iterrows():
                per_seed.append(
                    {
                        "capacity": capacity,
                        "n_pairs": int(n_pairs),
                        "offset": offset,
                        "alpha": float(alpha),
                        "seed": int(row["seed"]),
                        "area_dpo": row["area_dpo"],
                        "area_odpo": row["area_odpo"],
                        "diff": row["area_odpo"] - row["area_dpo"],
                    }
                )
    return pd.DataFrame(settings), pd.DataFrame(per_seed)


def setting_label(row) -> str:
    return f"{row.capacity}, {row.n_pairs} pairs, f={row.offset}, α={row.alpha:g}"


def draw(study: pd.DataFrame, per_seed: pd.DataFrame, out: Path, budget: float) -> None:
    """One row per setting: the mean difference with its interval, each seed's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(study) + 1.6))
    ys = np.arange(len(study))[::-1]
    for y, row in zip(ys, study.itertuples(), strict=True):
        color = ("tab:green" if row.diff > 0 else "tab:red") if row.significant else "0.45"
        ax.plot([row.ci_low, row.ci_high], [y, y], color=color, lw=2.2)
        ax.plot(row.diff, y, "o", color=color, ms=6)
        seeds = per_seed[
            (per_seed["capacity"] == row.capacity)
            & (per_seed["n_pairs"] == row.n_pairs)
            & (per_seed["offset"] == row.offset)
            & (per_seed["alpha"] == row.alpha)
        ]
        ax.plot(seeds["diff"], [y - 0.22] * len(seeds), ".", color="k", ms=4, alpha=0.7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ys, [setting_label(r) for r in study.itertuples()], fontsize=8)
    ax.set_xlabel(f"area under the reward-KL frontier (KL ≤ {budget:g}), ODPO − DPO")
    ax.set_title(
        "Does ODPO beat DPO? (embedded stand-in, not the paper's models or data)\n"
        "circle: mean over seeds; bar: bootstrap 95% interval; dots: each seed;\n"
        "green / red: the interval excludes 0 (ODPO above / below DPO)",
        fontsize=8,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(out)


def render(study: pd.DataFrame, budget: float, n_boot: int) -> str:
    """summary.md: the table of settings and what is and is not significant."""
    up = study[study["significant"] & (study["diff"] > 0)]
    down = study[study["significant"] & (study["diff"] < 0)]
    header = ["setting", "seeds", "area DPO", "area ODPO", "ODPO − DPO", "95% interval",
              "significant", "matched β×seed", "ODPO better", "ODPO dominates", "DPO dominates"]  # fmt: skip
    rows = [
        [
            setting_label(r),
            str(r.seeds),
            num(r.area_dpo),
            num(r.area_odpo),
            f"{r.diff:+.4f}",
            f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
            "yes" if r.significant else "no",
            str(r.matched),
            str(r.odpo_better),
            str(r.odpo_dominates),
            str(r.dpo_dominates),
        ]
        for r in study.itertuples()
    ]
    lines = [
        "# Study: when does ODPO beat DPO?",
        "",
        "Embedded stand-in (small GPT-2s trained here, Rotten Tomatoes text, a TF-IDF "
        "classifier), not the paper's models or data. Produced by `make study`.",
        "",
        f"Per setting: the area under the reward-vs-KL frontier for KL ≤ {budget:g} (floor: "
        "the SFT reward), ODPO minus DPO, averaged over seeds; the interval is a percentile "
        f"bootstrap over seeds ({n_boot} resamples). Each seed pairs the two losses on the same "
        "SFT model, sample set and pairs. *Matched β×seed*: runs of the two at the same β and "
        "seed; *ODPO better*: higher reward there; *dominates*: higher-or-equal reward at "
        "lower-or-equal KL, one strict.",
        "",
        markdown_table(header, rows, right=len(header) - 1),
        "",
        "## What is significant",
        "",
        f"{len(study)} settings; ODPO's frontier is significantly above DPO's in {len(up)}, "
        f"significantly below in {len(down)}, and not distinguishable in "
        f"{len(study) - len(up) - len(down)}.",
        "",
    ]
    for label, part in (("Above", up), ("Below", down)):
        if len(part):
            lines.append(f"- {label}: " + "; ".join(setting_label(r) for r in part.itertuples()))
    lines += [
        "",
        "With 3 seeds a bootstrap interval is coarse (10 distinct resampled means) and tends "
        "to be too narrow; a setting called significant here is a lead to check with more "
        "seeds, not a settled result. Per-seed areas: `per_seed.csv`.",
        "",
    ]
    return "\n".join(lines)


def run(
    out: Path, budget: float = 2.0, n_boot: int = 10_000, cache_dir: Path | None = None
) -> bool:
    """Write the study's outputs from the run tables in ``out``'s sub-folders; False (and
    nothing written) when they are already up to date with those tables."""
    start = time.perf_counter()
    folders = sorted(p.parent for p in out.glob("*/runs.csv"))
    if not folders:
        raise SystemExit(f"error: no run tables in {out}/*/runs.csv; run `make study` first")
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
    if done and all((out / name).is_file() for name in OUTPUTS):
        if ledger is not None:
            ledger.record("study", key, "reused", time.perf_counter() - start)
        print(f"[study] {out}: up to date with its {len(folders)} tables (reused)")
        return False
    folders.sort(key=_model_size)  # the smaller model's settings first
    tables = {capacity_label(p): read(p / "runs.csv") for p in folders}
    study, per_seed = compare(tables, budget, n_boot)
    if study.empty:
        raise SystemExit(f"error: no setting in {out} has both DPO and ODPO runs")
    atomic_write_text(out / "study.csv", study.to_csv(index=False))
    atomic_write_text(out / "per_seed.csv", per_seed.to_csv(index=False))
    draw(study, per_seed, out / "odpo_vs_dpo.png", budget)
    atomic_write_text(out / "summary.md", render(study, budget, n_boot))
    atomic_write_text(stamp, key + "\n")
    if ledger is not None:
        ledger.record("study", key, "computed", time.perf_counter() - start)
    significant = int(study["significant"].sum())
    print(f"[study] {len(study)} settings, {significant} with an interval excluding 0 -> {out}")
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
    print(json.dumps({"outputs": [str(args.out / n) for n in OUTPUTS]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
