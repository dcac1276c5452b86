"""The run table: one row per training run plus the SFT baseline, upserted
under a file lock so parallel jobs of a sweep can all write to it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from filelock import FileLock

from pipeline.cache import atomic_write_text

IDENTITY = ["loss", "beta", "alpha", "offset", "n_pairs", "seed"]
COLUMNS = IDENTITY + [
    "reward",
    "reward_se",
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


def upsert(table: Path, rows: list[dict]) -> pd.DataFrame:
    """Insert rows, replacing any earlier row with the same identity columns."""
    table.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(table) + ".lock"):
        old = read(table) if table.is_file() else pd.DataFrame(columns=COLUMNS)
        new = pd.DataFrame(rows).reindex(columns=COLUMNS)
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
    order = {"sft": 0, "dpo": 1, "odpo": 2}
    return df.sort_values(
        ["loss", "offset", "alpha", "n_pairs", "seed", "beta"],
        key=lambda c: c.map(order) if c.name == "loss" else c,
        na_position="first",
    ).reset_index(drop=True)


def read(table: Path) -> pd.DataFrame:
    return pd.read_csv(table, keep_default_na=True)
