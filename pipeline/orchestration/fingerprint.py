"""One configuration per results table: the fingerprint a run computes from its config,
and the claim it makes on its results folder before any work.

Each results folder records in ``fingerprint.json`` a fingerprint of every setting that is
not a sweep axis (plus the stages' code versions, from the stage graph). A run whose
fingerprint differs is refused before it computes anything, naming the settings that
differ, so a table never mixes two configurations. Reporting only reads the file
(``pipeline.report.runs.read_fingerprint``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from pipeline.infra.cache import atomic_write_json, stable_hash
from pipeline.infra.errors import ConfigError
from pipeline.modeling import precision
from pipeline.orchestration.graph import NOT_IN_KEY, OPTIONAL, STAGE_VERSIONS
from pipeline.report.runs import (
    AXES,
    FINGERPRINT,
    NOT_RESULTS,
    OMITTED_AT_DEFAULT,
    read_fingerprint,
)
from pipeline.scoring.scorers import SCORERS


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
    skip = AXES + NOT_RESULTS + tuple(k for keys in NOT_IN_KEY.values() for k in keys)
    # A task's scorer block holds every scale's scorer settings; only the chosen scorer's count.
    own = SCORERS[cfg.scorer.name].KEYS if cfg.scorer.name in SCORERS else ()
    used = ("name", "min_accuracy", "max_eval_rows", *own)
    skip += tuple(f"scorer.{k}" for k in cfg.scorer if k not in used)
    # model=embedded is described by scale.model alone, as before model files existed.
    if (cfg.get("model") or {}).get("name", "embedded") == "embedded":
        skip += ("model",)
    settings = {
        k: v
        for k, v in leaves(OmegaConf.to_container(cfg, resolve=True)).items()
        if not _excluded(k, skip)
    }
    # Settings added with the performance work, left out at the values that compute what
    # the code computed before them, so that earlier tables keep their fingerprint.
    settings.pop("precision", None)
    if precision.of(cfg) != "fp32":
        settings["precision"] = precision.of(cfg)
    for name, default in OMITTED_AT_DEFAULT:
        if settings.get(name, default) == default:
            settings.pop(name, None)
    code = {
        name: version
        for name, version in STAGE_VERSIONS.items()
        if name not in OPTIONAL or OPTIONAL[name].params(cfg) is not None
    }
    body = {"settings": settings, "code": code}
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
