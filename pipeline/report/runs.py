"""The run table: one row per training run plus the SFT baseline, upserted
under a file lock so parallel jobs of a sweep can all write to it.

One configuration per table: each results folder records in ``fingerprint.json`` a
fingerprint of every setting that is not a sweep axis (plus the stages' code
versions). A run whose fingerprint differs is refused before it computes anything,
naming the settings that differ, so a table never mixes two configurations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from pipeline.infra.cache import atomic_write_json, atomic_write_text, stable_hash
from pipeline.infra.errors import ConfigError

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


def upsert(table: Path, rows: list[dict], metrics: list[str] = METRICS) -> pd.DataFrame:
    """Insert rows, replacing any earlier row with the same identity columns. ``metrics``:
    the task's result columns."""
    table.parent.mkdir(parents=True, exist_ok=True)
    columns = IDENTITY + list(metrics) + RUN_COLUMNS
    with FileLock(str(table) + ".lock"):
        old = read(table) if table.is_file() else pd.DataFrame(columns=columns)
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
    order = {"sft": 0, "dpo": 1, "odpo": 2}
    return df.sort_values(
        ["loss", "offset", "alpha", "n_pairs", "seed", "beta"],
        key=lambda c: c.map(order) if c.name == "loss" else c,
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


# ---- one configuration per table ------------------------------------------------------


def leaves(node: object, prefix: str = "") -> dict[str, object]:
    """Full dotted key -> value for every leaf of a resolved config container."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for k, v in node.items():
            out.update(leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def _excluded(key: str, skip: tuple[str, ...]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in skip)


def fingerprint(cfg: DictConfig) -> dict:
    """Every resolved setting that is not a sweep axis and can change a number, plus
    the code version of every stage; ``id`` hashes both."""
    from pipeline.orchestration.graph import NOT_IN_KEY, STAGE_VERSIONS
    from pipeline.scoring.scorers import SCORERS

    skip = AXES + NOT_RESULTS + tuple(k for keys in NOT_IN_KEY.values() for k in keys)
    # A task's scorer block holds every scale's scorer settings; only the chosen scorer's count.
    own = SCORERS[cfg.scorer.name].KEYS if cfg.scorer.name in SCORERS else ()
    used = ("name", "min_accuracy", "max_eval_rows", *own)
    skip += tuple(f"scorer.{k}" for k in cfg.scorer if k not in used)
    settings = {
        k: v
        for k, v in leaves(OmegaConf.to_container(cfg, resolve=True)).items()
        if not _excluded(k, skip)
    }
    # Settings added with the performance work, left out at the values that compute what
    # the code computed before them, so that earlier tables keep their fingerprint.
    from pipeline.modeling import precision

    settings.pop("precision", None)
    if precision.of(cfg) != "fp32":
        settings["precision"] = precision.of(cfg)
    for name, default in OMITTED_AT_DEFAULT:
        if settings.get(name, default) == default:
            settings.pop(name, None)
    body = {"settings": settings, "code": dict(STAGE_VERSIONS)}
    return {"id": stable_hash(body)[:16], **body}


def differing(old: dict, new: dict) -> list[str]:
    """The settings (and ``code.<stage>`` versions) where two fingerprints disagree."""
    keys = []
    for part, prefix in (("settings", ""), ("code", "code.")):
        a, b = old.get(part, {}), new.get(part, {})
        keys += [
            prefix + k
            for k in sorted(set(a) | set(b))
            if a.get(k, "<unset>") != b.get(k, "<unset>")
        ]
    return keys


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


def claim_table(results_dir: Path, fp: dict, fresh: bool = False) -> None:
    """Make ``results_dir`` a table of configuration ``fp``, or refuse.

    An empty folder (or a table from before fingerprints) takes ``fp``. A table of
    another configuration is refused with one line naming the differing settings,
    unless ``fresh``: then it is moved, with its figures and summary, into
    ``previous/<its fingerprint>/`` and a new table starts."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    table = results_dir / "runs.csv"
    with FileLock(str(table) + ".lock"):
        old = read_fingerprint(results_dir)
        if old is not None and old["id"] == fp["id"]:
            return
        record = dict(fp)
        if old is not None:
            keys = differing(old, fp)
            if not fresh:
                shown = ", ".join(keys[:6]) + (
                    f" and {len(keys) - 6} more" if len(keys) > 6 else ""
                )
                raise ConfigError(
                    f"{results_dir} holds runs of another configuration (fingerprint {old['id']}, "
                    f"this run {fp['id']}; differing: {shown}); give this run its own "
                    f"results_dir=..., or pass fresh_table=true to move the old table to "
                    f"{results_dir / 'previous' / old['id']} and start a new one"
                )
            _move_aside(results_dir, old["id"])
            record["replaces"] = {"id": old["id"], "differing": keys}
            print(
                f"[results] moved the table of configuration {old['id']} to previous/{old['id']}/"
            )
        elif table.is_file():
            print(f"[results] {table} had no fingerprint; recording {fp['id']} for it")
        atomic_write_json(results_dir / FINGERPRINT, record)


def _move_aside(results_dir: Path, old_id: str) -> None:
    dest = results_dir / "previous" / old_id
    dest.mkdir(parents=True, exist_ok=True)
    for path in results_dir.iterdir():
        if path.is_file() and not path.name.endswith(".lock"):
            shutil.move(str(path), dest / path.name)
