"""A results folder's figure spec, ``figures.json``: which figure kind it gets, its title
and whose task labels and metric direction the figures and summary.md use."""

from __future__ import annotations

import json
from pathlib import Path

SPEC = "figures.json"  # the figure spec of this results folder (kind, title, task)
DEFAULT_SPEC = {"kind": "reward_vs_kl", "title": "eval reward vs KL", "task": "sentiment"}


def read_spec(results_dir: Path) -> dict:
    path = Path(results_dir) / SPEC
    return {**DEFAULT_SPEC, **json.loads(path.read_text())} if path.is_file() else DEFAULT_SPEC
