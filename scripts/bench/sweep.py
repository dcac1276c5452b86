"""Work per sweep: how many times each stage runs for a whole grid, counted from
``pipeline.orchestration.graph.stage_keys`` over the grid's configs (nothing is trained).

- planned: distinct cache keys per stage, what the cache makes the sweep compute;
- minimum: one data split, prompt set, SFT model and classifier; one sample set, its
  scores and one reference pass per seed; one pair subsample per (seed, n_pairs); one
  training and one evaluation per run, plus the SFT model's evaluation;
- naive: a sweep that recomputes everything in every run (its own SFT model,
  classifier, samples, scores, pairs, reference and both evaluations).

With a ledger (``<cache_dir>/ledger.jsonl``: one JSON line per stage call with
``stage``, ``key``, ``status`` and ``seconds``) the lines whose key belongs to the
grid give what was computed and reused, and the seconds the computations took.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from pipeline import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"
# Stages in the order a run calls them; evaluate_sft is the SFT baseline's evaluation
# (the ledger records it under "evaluate").
STAGES = (
    "data", "prompts", "sft", "classifier", "sample", "score", "pairs", "reference", "train",
    "evaluate",
)  # fmt: skip


def sweep_params(experiment: str) -> dict[str, list[str]]:
    """The experiment's ``hydra.sweeper.params``, each a list of override values."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=False) or {}
    out = {}
    for key, values in params.items():
        text = str(values)
        if "(" in text:
            raise ValueError(f"{key}={text}: only comma-separated sweeps are counted")
        out[key] = [v.strip() for v in text.split(",")]
    return out


def grid_configs(experiment: str, overrides: list[str] | None = None) -> list[DictConfig]:
    """One composed config per grid point, as ``-m experiment=...`` would run them.
    Config groups (e.g. ``loss``) are composed, other keys set on a copy."""
    from hydra import compose, initialize_config_dir

    params = sweep_params(experiment)
    groups = [k for k in params if (CONF / k).is_dir()]
    values = [k for k in params if k not in groups]
    bases: dict[tuple, DictConfig] = {}
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for choice in itertools.product(*(params[g] for g in groups)):
            extra = [f"{g}={c}" for g, c in zip(groups, choice, strict=True)]
            bases[choice] = compose(
                "config", overrides=[f"experiment={experiment}", *(overrides or []), *extra]
            )
    configs = []
    for choice in bases:
        for setting in itertools.product(*(params[k] for k in values)):
            cfg = copy.deepcopy(bases[choice])
            for key, value in zip(values, setting, strict=True):
                OmegaConf.update(cfg, key, yaml.safe_load(value))
            configs.append(cfg)
    return configs


def planned_keys(configs: list[DictConfig]) -> dict[str, set[str]]:
    """stage -> the distinct keys the grid needs (evaluate and evaluate_sft together)."""
    from pipeline.orchestration import graph as plan

    keys: dict[str, set[str]] = defaultdict(set)
    for cfg in configs:
        for stage, key in plan.stage_keys(cfg).items():
            keys["evaluate" if stage == "evaluate_sft" else stage].add(key)
    return keys


def minimum(configs: list[DictConfig]) -> dict[str, int]:
    seeds = {int(c.seed) for c in configs}
    seed_sizes = {(int(c.seed), int(c.n_pairs)) for c in configs}
    has_classifier = any(c.scorer.name for c in configs)
    n = len(configs)
    return {
        "data": 1, "prompts": 1, "sft": 1, "classifier": int(has_classifier),
        "sample": len(seeds), "score": len(seeds), "pairs": len(seed_sizes),
        "reference": len(seeds), "train": n, "evaluate": n + 1,
    }  # fmt: skip


def naive(configs: list[DictConfig]) -> dict[str, int]:
    n = len(configs)
    has_classifier = any(c.scorer.name for c in configs)
    counts = {stage: n for stage in STAGES}
    counts["classifier"] = n if has_classifier else 0
    counts["evaluate"] = 2 * n  # its own policy and its own SFT baseline
    return counts


def _summary(entries: list[dict]) -> dict:
    """Per stage: computed / reused / other calls, distinct keys computed, seconds."""
    per: dict[str, dict] = {}
    for stage in STAGES:
        mine = [e for e in entries if e.get("stage") == stage]
        status = Counter(e.get("status", "?") for e in mine)
        done = [e for e in mine if e.get("status") == "computed"]
        seconds = sum(float(e.get("seconds", 0.0)) for e in done)
        per[stage] = {
            "computed": status["computed"],
            "reused": status["reused"],
            "other": sum(v for k, v in status.items() if k not in ("computed", "reused")),
            "distinct_keys_computed": len({e.get("key") for e in done}),
            "computed_seconds": round(seconds, 3),
            "seconds_per_computation": round(seconds / len(done), 3) if done else None,
        }
    return per


def read_ledger(path: Path, keys: dict[str, set[str]]) -> dict:
    """The ledger's lines whose (stage, key) the grid plans, summarised per stage, and
    the same for every line (other grids, scales and configurations included)."""
    entries = [json.loads(raw) for raw in Path(path).read_text().splitlines() if raw.strip()]
    mine = [e for e in entries if e.get("key") in keys.get(e.get("stage"), ())]
    return {
        "path": str(path),
        "lines": len(entries),
        "lines_for_this_grid": len(mine),
        "per_stage": _summary(mine),
        "per_stage_all_lines": _summary(entries),
    }


def work_per_sweep(
    experiment: str = "sentiment", ledger: str | None = None, scale: str | None = None
) -> dict:
    """Every count for ``experiment``'s grid (at ``scale``, default the config's)."""
    overrides = [f"scale={scale}"] if scale else []
    configs = grid_configs(experiment, overrides)
    keys = planned_keys(configs)
    planned = {stage: len(keys.get(stage, ())) for stage in STAGES}
    out = {
        "experiment": experiment,
        "scale": str(configs[0].scale.name),
        "runs": len(configs),
        "grid": sweep_params(experiment),
        "planned": planned,
        "minimum": minimum(configs),
        "naive": naive(configs),
        "ledger": None,
    }
    if ledger and Path(ledger).is_file():
        found = read_ledger(Path(ledger), keys)
        out["ledger"] = found
        # Stage-seconds each way of running the grid takes, at the ledger's mean seconds
        # per computation: this grid's lines where it has them, else all lines.
        per_stage, source = {}, {}
        for stage in STAGES:
            for where in ("per_stage", "per_stage_all_lines"):
                per = found[where][stage]["seconds_per_computation"]
                if per is not None:
                    per_stage[stage], source[stage] = per, where
                    break
        out["seconds_per_computation"] = per_stage
        out["seconds_per_computation_from"] = source
        out["estimated_stage_seconds"] = {
            kind: round(sum(per_stage[s] * out[kind][s] for s in per_stage), 1)
            for kind in ("planned", "minimum", "naive")
        }
        out["stages_without_timing"] = [s for s in STAGES if s not in per_stage]
    return out
