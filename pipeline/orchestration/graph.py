"""The stage graph, written once as data: each stage's name, module and inputs.

A run walks it in order, building (or reusing) each stage's artifact from the artifacts
of its inputs (:func:`walk`); the key plan walks the same graph with nothing built or
loaded, computing every stage's cache key from the config alone (:func:`stage_keys`).
The plan answers "which artifacts would this config reuse?" and is what the cache-key
tests perturb: a config key a stage reads must move that stage's key unless the stage
lists it in its ``NOT_IN_KEY``.

A stage module has ``VERSION``, ``params(cfg)`` and ``run(cfg, cache, *inputs)``; where
what identifies its output is not simply ``params(cfg)`` and its present inputs, it says
so in ``identity(cfg, *inputs) -> (params, key_inputs) | None`` (None: the stage makes no
artifact for this config, e.g. no classifier for a task that names no scorer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from omegaconf import DictConfig

from pipeline.infra.cache import Artifact, Cache
from pipeline.stages import (
    classifier,
    data,
    evaluate,
    heldout,
    judge,
    pairs,
    prompts,
    reference,
    sample,
    score,
    sft,
    train,
)


@dataclass(frozen=True)
class Stage:
    name: str  # its name in a run (and in ``stage_keys``)
    module: ModuleType
    inputs: tuple[str, ...]  # names of the stages whose artifacts ``run`` takes, in order
    folder: str = ""  # its cache folder, when not ``name`` (one module run twice)
    judged_only: bool = False  # runs only for a judged task (task=summarize)
    lead_only: bool = False  # in a distributed launch, rank 0 alone runs it
    # Makes an artifact only for some tasks, and is in a results table's fingerprint only
    # then (tables made before it existed keep theirs).
    optional: bool = False

    @property
    def cache_name(self) -> str:
        return self.folder or self.name


GRAPH: tuple[Stage, ...] = (
    Stage("data", data, ()),
    Stage("prompts", prompts, ("data",)),
    Stage("sft", sft, ("data",)),
    Stage("classifier", classifier, ("data",)),
    Stage("sample", sample, ("sft", "prompts")),
    Stage("score", score, ("sample", "classifier", "prompts")),
    Stage("pairs", pairs, ("score",)),
    Stage("reference", reference, ("sft", "sample", "pairs")),
    Stage("heldout", heldout, ("sft", "prompts"), optional=True),
    # The SFT model evaluated once (same eval prompts and seed) as the baseline row.
    Stage(
        "evaluate_sft",
        evaluate,
        ("sft", "sft", "classifier", "prompts", "heldout"),
        folder="evaluate",
    ),  # fmt: skip
    Stage("judge_sft", judge, ("sft", "sft", "prompts"), "judge", judged_only=True, lead_only=True),
    Stage("train", train, ("sft", "sample", "pairs", "reference")),
    Stage(
        "evaluate", evaluate, ("train", "sft", "classifier", "prompts", "heldout"), lead_only=True
    ),  # fmt: skip
    Stage("judge", judge, ("train", "sft", "prompts"), judged_only=True, lead_only=True),
)
BY_NAME = {stage.name: stage for stage in GRAPH}

# Keys every stage may read that say where a computation runs, not what it computes.
# ``distributed.name`` (conf/distributed/): over how many processes training is shared;
# the group's other settings are read only in a distributed launch.
RUNTIME_KEYS = ("device", "distributed.name")

# Stage module name -> its module, for the stages whose code version is part of a
# results table's fingerprint (the judge joined later and is in none).
STAGE_MODULES: dict[str, ModuleType] = {
    s.cache_name: s.module for s in GRAPH if not s.judged_only and s.name == s.cache_name
}
# Stage name -> its code version (part of its key; a results table records them).
STAGE_VERSIONS: dict[str, int] = {name: m.VERSION for name, m in STAGE_MODULES.items()}
# Stages in a table's fingerprint only where they make an artifact (``Stage.optional``).
OPTIONAL: dict[str, ModuleType] = {s.name: s.module for s in GRAPH if s.optional}
# Stage name -> the config keys it reads without them changing its output.
NOT_IN_KEY: dict[str, tuple[str, ...]] = {
    name: m.NOT_IN_KEY for name, m in STAGE_MODULES.items() if hasattr(m, "NOT_IN_KEY")
}


def applies(stage: Stage, judged: bool) -> bool:
    return judged or not stage.judged_only


def walk(
    cfg: DictConfig,
    cache: Cache,
    names: Iterable[str],
    done: dict[str, Artifact | None],
    *,
    judged: bool,
    lead: bool = True,
    extra: dict[str, dict] | None = None,
) -> dict[str, Artifact | None]:
    """Build (or reuse) the stages ``names``, in graph order, from the artifacts in ``done``
    (updated and returned). ``extra[name]`` holds keyword arguments a stage's ``run`` takes
    besides its inputs (the training's logger)."""
    wanted = set(names)
    for stage in GRAPH:
        if stage.name not in wanted or not applies(stage, judged) or (stage.lead_only and not lead):
            continue
        inputs = [done.get(name) for name in stage.inputs]
        done[stage.name] = stage.module.run(
            cfg, cache, *inputs, **(extra or {}).get(stage.name, {})
        )
    return done


def identity(stage: Stage, cfg: DictConfig, inputs: list[Artifact | None]):
    """(params, key inputs) of ``stage`` for ``cfg``, or None when it makes no artifact."""
    own = getattr(stage.module, "identity", None)
    if own is not None:
        return own(cfg, *inputs)
    return stage.module.params(cfg), [a for a in inputs if a is not None]


def planned(cfg: DictConfig, judged: bool = False) -> dict[str, Artifact | None]:
    """Every stage's artifact as the config names it: stage, key and no files."""
    done: dict[str, Artifact | None] = {}
    for stage in GRAPH:
        if not applies(stage, judged):
            continue
        found = identity(stage, cfg, [done.get(name) for name in stage.inputs])
        if found is None:
            done[stage.name] = None
            continue
        params, key_inputs = found
        key = Cache.identity_key(stage.cache_name, params, key_inputs, stage.module.VERSION)
        done[stage.name] = Artifact(stage.cache_name, key, Path())
    return done


def stage_keys(cfg: DictConfig) -> dict[str, str]:
    """stage -> cache key for the run ``cfg`` describes. ``evaluate`` is the trained
    policy's evaluation, ``evaluate_sft`` the SFT baseline's."""
    return {name: art.key for name, art in planned(cfg).items() if art is not None}
