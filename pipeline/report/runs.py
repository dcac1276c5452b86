"""The run table: one row per training run plus the SFT baseline, upserted
under a file lock so parallel jobs of a sweep can all write to it.

One configuration per table: each results folder records in ``fingerprint.json`` a
fingerprint of every setting that is not a sweep axis (plus the stages' code
versions). A run whose fingerprint differs is refused before it computes anything,
naming the settings that differ, so a table never mixes two configurations."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from filelock import FileLock

from pipeline.infra.cache import atomic_write_text
from pipeline.report.variants import table_rank

FINGERPRINT = "fingerprint.json"
# The sweep axes: the settings that vary between rows of one table (its identity columns).
AXES = ("loss", "offset", "n_pairs", "seed")
# Settings that say where things go, how a run is watched or over how many processes it
# trains (``distributed``: in no cache key either), not what it computes.
NOT_RESULTS = (
    "distributed",
    "root",
    "cache_dir",
    "results_dir",
    "experiment_name",
    "figures",
    "wandb",
    "offline",
    "keep_weights",
    "verify",
    "fresh_table",
    "disk_free_gb",
    "scale.results_suffix",
)

# Settings added after tables were committed, left out of the fingerprint at the value
# that computes what the code computed before them.
OMITTED_AT_DEFAULT = (
    ("scale.sample.bucket", False),
    ("scale.train.grad_accum", 1),
    ("scale.train.warmup_fraction", None),
    ("eval.protocol", "ours"),
    ("eval.kl_with_prompt", False),
    ("model.attention", "sdpa"),
)

IDENTITY = ["loss", "beta", "alpha", "offset", "n_pairs", "seed"]
# The task's result columns (``Task.columns``: sentiment's reward, reward_se) go between.
METRICS = ["reward", "reward_se"]
RUN_COLUMNS = [
    "kl",
    "kl_se",
    "kl_exact",
    "kl_exact_se",
    "train_seconds",
    "n_eval",
    "scale",
    "stand_in",
    "train_key",
    "eval_key",
]


COLUMNS = IDENTITY + METRICS + RUN_COLUMNS
# Which model and precision made a row: present only in tables that have them (not the
# embedded model in fp32), after ``stand_in``.
MADE_WITH = ["base_model", "precision"]


def upsert(table: Path, rows: list[dict], metrics: list[str] = METRICS) -> pd.DataFrame:
    """Insert rows, replacing any earlier row with the same identity columns. ``metrics``:
    the task's result columns."""
    table.parent.mkdir(parents=True, exist_ok=True)
    columns = IDENTITY + list(metrics) + RUN_COLUMNS
    with FileLock(str(table) + ".lock"):
        old = read(table) if table.is_file() else pd.DataFrame(columns=columns)
        made = [c for c in MADE_WITH if c in old.columns or any(c in r for r in rows)]
        at = columns.index("stand_in") + 1
        columns = columns[:at] + made + columns[at:]
        old = old.reindex(columns=columns) if made else old
        new = pd.DataFrame(rows).reindex(columns=columns)
        both = pd.concat([df for df in (old, new) if len(df)], ignore_index=True)
        both = both[~identity_keys(both).duplicated(keep="last")]
        for col in ("n_pairs", "seed", "n_eval"):
            both[col] = pd.to_numeric(both[col], errors="coerce").round().astype("Int64")
        both = sort(both)
        atomic_write_text(table, both.to_csv(index=False))
    return both


def identity_keys(df: pd.DataFrame) -> pd.Series:
    """One string per row from the identity columns; numbers normalised so that
    5000 and 5000.0 (after a CSV round trip) are the same run."""
    parts = []
    for col in IDENTITY:
        values = df[col]
        if col in ("beta", "alpha", "n_pairs", "seed"):
            values = (
                pd.to_numeric(values, errors="coerce")
                .astype(float)
                .map(lambda v: "" if pd.isna(v) else f"{v:g}")
            )
        parts.append(values.astype("string").fillna(""))
    return pd.concat(parts, axis=1).agg("|".join, axis=1)


def sort(df: pd.DataFrame) -> pd.DataFrame:
    """The SFT row first, then the baseline's runs, then every other loss by name
    (``variants.table_rank``); within a loss by offset, alpha, size, seed and beta."""
    return df.sort_values(
        ["loss", "offset", "alpha", "n_pairs", "seed", "beta"],
        key=lambda c: c.map(table_rank) if c.name == "loss" else c,
        na_position="first",
    ).reset_index(drop=True)


def read(table: Path) -> pd.DataFrame:
    return pd.read_csv(table, keep_default_na=True)


def as_reward(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The table with the task's metric (and its SE) in the ``reward`` columns, which the
    summary and figures read (a table may also hold a scorer's reward: dropped here)."""
    if metric == "reward":
        return df
    df = df.drop(columns=["reward", "reward_se"], errors="ignore")
    return df.rename(columns={metric: "reward", f"{metric}_se": "reward_se"})


def read_fingerprint(results_dir: Path) -> dict | None:
    path = Path(results_dir) / FINGERPRINT
    return json.loads(path.read_text()) if path.is_file() else None


def describe_fingerprint(fingerprint: dict | None) -> list[str]:
    """The table's configuration fingerprint, and what changed if it replaced another."""
    if fingerprint is None:
        return ["Configuration: no fingerprint recorded for this table.", ""]
    out = [
        f"Configuration: fingerprint `{fingerprint['id']}` (every setting but the sweep axes, "
        "and the stages' code versions; listed in `fingerprint.json`). Every row is of this "
        "configuration."
    ]
    replaced = fingerprint.get("replaces")
    if replaced:
        keys = ", ".join(f"`{k}`" for k in replaced["differing"]) or "none"
        out.append(
            f"It replaced a table of configuration `{replaced['id']}` (kept in "
            f"`previous/{replaced['id']}/`); the settings that differ: {keys}."
        )
    return [*out, ""]
