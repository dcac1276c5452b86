"""Tasks: ``pipeline/tasks/<name>.py`` defines ``TASK``; ``conf/task/<name>.yaml`` selects
it with ``task.name``. ``get`` finds a task by that name, so a new task needs no other
file touched (see ``base.Task`` for what a task decides).

May import ``pipeline.scoring`` and the layers below it (never a stage)."""

from __future__ import annotations

import importlib
from pathlib import Path

from omegaconf import DictConfig

from pipeline.infra.errors import ConfigError
from pipeline.tasks.base import Task

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("__init__", "base"))


def by_name(name: str) -> Task:
    if name not in names():
        raise ConfigError(f"task.name={name!r} has no module pipeline/tasks/{name}.py ({names()})")
    task = getattr(importlib.import_module(f"pipeline.tasks.{name}"), "TASK", None)
    if not isinstance(task, Task):
        raise ConfigError(f"pipeline/tasks/{name}.py defines no TASK (a pipeline.tasks.base.Task)")
    return task


def get(cfg: DictConfig) -> Task:
    """The task of a run's config."""
    return by_name(str(cfg.task.name))
