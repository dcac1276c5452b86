"""ODPO pipeline: SFT -> sampling -> scoring -> pairs -> DPO/ODPO -> evaluation -> figures.

Folders are layers, top to bottom; each imports only the layers below it (the contracts
in pyproject.toml, checked by `make lint`):

    orchestration   the stage graph and its walk, one run, validation, Hydra callbacks
    report, stages  tables/figures/summaries  |  one cached stage per module
    tasks           one module per task (with conf/task/<name>.yaml)
    scoring         scorers, the offline rater, the judges
    corpora, modeling  readers of named data sets  |  models, sampling, training loop, FSDP
    infra           cache, files, errors, checks, hub, wheels, logging, fault points
    math            pure functions: losses, offsets, KL, pairs, rewards, frontiers, stats
"""

import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Resolvers used by conf/: the directory the user runs from, and the project checkout
# (for files the project ships, such as the micro-scale fixture).
OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)


def _by_scale(options: dict, *, _root_) -> object:
    """``${by_scale:{micro: 3, embedded: 4, paper: 8}}``: a task's setting per scale, so
    one task file holds every scale's data, scorer and lengths."""
    name = _root_.scale.name
    if name not in options:
        raise ValueError(f"this task sets no value for scale={name} (it has {sorted(options)})")
    return options[name]


OmegaConf.register_new_resolver("by_scale", _by_scale, replace=True)
