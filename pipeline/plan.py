"""Every stage's cache key for one run, computed from the config alone (nothing is
built or loaded). ``run_experiment`` reaches the same keys by running the stages;
a test holds the two equal, so the plan is what a run will use.

The plan answers "which artifacts would this config reuse?" and is what the
cache-key tests perturb: a config key a stage reads must move that stage's key
unless the stage lists it in its ``NOT_IN_KEY``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.cache import Artifact, Cache
from pipeline.io import read_samples_file
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
RUNTIME_KEYS = ("device",)

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


def samples_info(cfg: DictConfig) -> dict:
    """What the score stage learns from the sample stage before it runs."""
    if not OmegaConf.select(cfg, "samples_file"):
        return {}
    digest = sample.params(cfg)["samples_file_sha256"]
    given = read_samples_file(sample.samples_path(cfg))[0]["scores"] is not None
    return {"samples_file_sha256": digest, "given_scores": given}


def stage_keys(cfg: DictConfig) -> dict[str, str]:
    """stage -> cache key for the run ``cfg`` describes. ``evaluate`` is the trained
    policy's evaluation, ``evaluate_sft`` the SFT baseline's."""
    a: dict[str, Artifact] = {}
    a["data"] = _artifact("data", data.params(cfg), [], data.VERSION)
    a["prompts"] = _artifact("prompts", prompts.params(cfg), [a["data"]], prompts.VERSION)
    a["sft"] = _artifact("sft", sft.params(cfg), [a["data"]], sft.VERSION)
    a["classifier"] = _artifact(
        "classifier", classifier.params(cfg), [a["data"]], classifier.VERSION
    )
    info = samples_info(cfg)
    sample_inputs = [a["sft"]] if info else [a["sft"], a["prompts"]]
    a["sample"] = _artifact("sample", sample.params(cfg), sample_inputs, sample.VERSION)
    score_inputs = [a["sample"]] if info.get("given_scores") else [a["sample"], a["classifier"]]
    a["score"] = _artifact("score", score.params(info), score_inputs, score.VERSION)
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
            [policy, a["sft"], a["classifier"], a["prompts"]],
            evaluate.VERSION,
        )
    return {name: art.key for name, art in a.items()}
