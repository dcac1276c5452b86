"""Every stage's cache key for one run, computed from the config alone (nothing is
built or loaded). ``run_experiment`` reaches the same keys by running the stages;
a test holds the two equal, so the plan is what a run will use.

The plan answers "which artifacts would this config reuse?" and is what the
cache-key tests perturb: a config key a stage reads must move that stage's key
unless the stage lists it in its ``NOT_IN_KEY``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache
from pipeline.stages import (
    classifier,
    data,
    evaluate,
    pairs,
    prompts,
    reference,
    sample,
    score,
    sft,
    train,
)

# Keys every stage may read that say where a computation runs, not what it computes.
# ``distributed.name`` (conf/distributed/): over how many processes training is shared;
# the group's other settings are read only in a distributed launch.
RUNTIME_KEYS = ("device", "distributed.name")

# Stage name -> the config keys it reads without them changing its output.
NOT_IN_KEY: dict[str, tuple[str, ...]] = {
    "data": data.NOT_IN_KEY,
    "sft": sft.NOT_IN_KEY,
    "classifier": classifier.NOT_IN_KEY,
    "reference": reference.NOT_IN_KEY,
    "train": train.NOT_IN_KEY,
}


# Stage name -> its module, in the order a run calls them.
STAGE_MODULES = {
    m.__name__.rsplit(".", 1)[1]: m
    for m in (data, prompts, sft, classifier, sample, score, pairs, reference, train, evaluate)
}
# Stage name -> its code version (part of its key; a results table records them).
STAGE_VERSIONS: dict[str, int] = {name: m.VERSION for name, m in STAGE_MODULES.items()}


def _artifact(stage: str, params: dict, inputs: list[Artifact], version: int) -> Artifact:
    return Artifact(stage, Cache.identity_key(stage, params, inputs, version), Path())


def stage_keys(cfg: DictConfig) -> dict[str, str]:
    """stage -> cache key for the run ``cfg`` describes. ``evaluate`` is the trained
    policy's evaluation, ``evaluate_sft`` the SFT baseline's."""
    a: dict[str, Artifact] = {}
    a["data"] = _artifact("data", data.params(cfg), [], data.VERSION)
    a["prompts"] = _artifact("prompts", prompts.params(cfg), [a["data"]], prompts.VERSION)
    a["sft"] = _artifact("sft", sft.params(cfg), [a["data"]], sft.VERSION)
    if cfg.scorer.name:  # a task may name no scorer (task=custom)
        a["classifier"] = _artifact(
            "classifier", classifier.params(cfg), [a["data"]], classifier.VERSION
        )
    a["sample"] = _artifact("sample", sample.params(cfg), [a["sft"], a["prompts"]], sample.VERSION)
    if tasks.get(cfg).given_samples_params(cfg) is not None:  # the task's own scores
        a["score"] = _artifact("score", {"given": True}, [a["sample"]], score.VERSION)
    else:
        a["score"] = _artifact(
            "score", score.params(cfg), [a["sample"], a["classifier"]], score.VERSION
        )
    a["pairs"] = _artifact("pairs", pairs.params(cfg), [a["score"]], pairs.VERSION)
    a["reference"] = _artifact(
        "reference", reference.params(cfg), [a["sft"], a["sample"]], reference.VERSION
    )
    a["train"] = _artifact(
        "train",
        train.params(cfg),
        [a["sft"], a["sample"], a["pairs"], a["reference"]],
        train.VERSION,
    )
    for name, policy in (("evaluate", a["train"]), ("evaluate_sft", a["sft"])):
        a[name] = _artifact(
            "evaluate",
            evaluate.params(cfg),
            [x for x in (policy, a["sft"], a.get("classifier"), a["prompts"]) if x],
            evaluate.VERSION,
        )
    return {name: art.key for name, art in a.items()}
