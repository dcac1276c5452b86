"""The TRL comparison's part of ``report.md``: the same loss, the throughput of both
sides and their ratios, and the profiles (``report.py`` renders the other sections)."""

from __future__ import annotations

import os

from scripts.bench.markdown import _f, _table

SIDES = {"ours": "ours", "trl": "TRL", "trl_precompute": "TRL, ref precomputed"}


def render_trl(s: dict, report: dict) -> list[str]:
    lines = [s["setup"], ""]
    if s.get("equality", {}):
        lines += _equality(s)
    lines += ["**Throughput** (pairs/s, medians):", ""]
    lines += _throughput(s)
    lines += [s["ratio_note"], ""]
    if s.get("profiles"):
        lines += _profiles(s["profiles"])
    return lines


def _equality(s: dict) -> list[str]:
    """The loss of both sides from the same weights on the same batches."""
    rows = []
    for size, e in s["equality"].items():
        if "error" in e:
            rows.append([size, e["error"], "", "", ""])
        elif e.get("trl") is None:
            rows.append([size, e["steps"], _f(e["ours"][0], 6), "TRL not installed", ""])
        else:
            rows.append(
                [
                    size,
                    e["steps"],
                    _f(e["ours"][0], 6),
                    f"{e['trl_first_step_abs_diff']:.1e} / {e['trl_precompute_first_step_abs_diff']:.1e}",
                    f"{e['trl_max_abs_diff']:.1e} / {e['trl_precompute_max_abs_diff']:.1e}",
                ]
            )
    return ["**Same loss?** " + s["equality_note"], ""] + _table(
        [
            "model",
            "steps",
            "our first loss",
            "difference at the first step (TRL / TRL precomputed)",
            "largest difference over the steps",
        ],
        rows,
    )


def _throughput(s: dict) -> list[str]:
    """Pairs/s of every side at every size, then ours over TRL's best."""
    rows, ratio_rows = [], []
    for size, r in s["sizes"].items():
        if "error" in r:
            rows.append([size, r["error"], "", "", "", ""])
            continue
        label = f"{size} ({r['n_params'] / 1e6:.2f}M params, {r['pairs']} pairs)"
        for side, name in SIDES.items():
            if side not in r:
                continue
            x = r[side]
            rows.append(
                [
                    label,
                    name,
                    _f(x["steady_pairs_per_s"]),
                    _f(x["pairs_per_s"]),
                    "in each step" if side == "trl" else _f(x["reference_seconds_median"], 2),
                    _f(x["pairs_per_s_with_reference"]),
                ]
            )
        if r.get("ratio") is not None:
            ratio_rows.append(
                [
                    label,
                    _f(r["ratio_steady"], 2) + "×",
                    _f(r["ratio_whole_call"], 2) + "×",
                    _f(r["ratio_with_reference"], 2) + "×",
                    f"≥ {r['target']}×: " + ("met" if r["target_met"] else "**not met**"),
                ]
            )
    lines = _table(
        ["model", "side", "steady", "whole call", "ref pass (s)", "whole call + ref pass"], rows
    )
    if ratio_rows:
        lines += _table(
            ["model", "ours / TRL's best, steady", "whole call", "with the ref passes", "target"],
            ratio_rows,
        )
    return lines


def _profiles(profiles: list[dict]) -> list[str]:
    return [
        "**Profiles** (`--profile`: pyinstrument, one run each after the timed ones, not used "
        "for any figure above): "
        + ", ".join(
            f"`{os.path.basename(p['path'])}` ({p['steps']} steps, {p['seconds']:.1f} s)"
            for p in profiles
            if "error" not in p
        ),
        "",
    ]
