"""Shared helpers: run the pipeline CLI at micro scale in a temporary cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    args: list[str],
    tmp: Path,
    check: bool = True,
    env: dict | None = None,
    wandb: str = "disabled",
) -> subprocess.CompletedProcess:
    """``python -m pipeline scale=micro ... <args>`` with its cache and results in ``tmp``."""
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": wandb,
    }
    full_env.update(env or {})
    flags = [a for a in args if a.startswith("-")]  # Hydra wants -m before the overrides
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        *flags,
        "scale=micro",
        f"wandb.mode={wandb}",
        f"cache_dir={tmp / 'cache'}",
        f"results_dir={tmp / 'results'}",
        f"hydra.run.dir={tmp / 'hydra'}",
        f"hydra.sweep.dir={tmp / 'hydra_multi'}",
        *[a for a in args if not a.startswith("-")],
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(
            f"pipeline failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def ledger(tmp: Path) -> list[dict]:
    path = tmp / "cache" / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture
def micro_dir(tmp_path: Path) -> Path:
    return tmp_path
