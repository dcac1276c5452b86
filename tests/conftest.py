"""Shared helpers: run the pipeline CLI at micro scale in a temporary cache."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _load_netguard():
    path = Path(__file__).resolve().parent / "netguard" / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("netguard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


netguard_module = _load_netguard()

ROOT = Path(__file__).resolve().parent.parent

# ---- no test touches the network ------------------------------------------------------
# The guard (tests/netguard/sitecustomize.py) runs in this process and, through
# PYTHONPATH, in every Python a test starts; refused attempts are logged to one file.
NETGUARD = ROOT / "tests" / "netguard"
_net_log = Path(tempfile.mkdtemp(prefix="netguard-")) / "attempts.log"
_net_log.touch()
atexit.register(shutil.rmtree, _net_log.parent, ignore_errors=True)
os.environ[netguard_module.LOG_ENV] = str(_net_log)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(NETGUARD), os.environ.get("PYTHONPATH")) if p
)
netguard_module.install()

# ---- one thread per BLAS pool -------------------------------------------------------
# `make test` runs two pytest workers on two cores. Torch's threads are fixed by the
# scale (one at micro); every BLAS/OpenMP pool in the processes tests start gets one too.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
# The one test at the embedded scale uses its two torch threads while the other worker
# runs: OpenMP threads that sleep instead of spinning when they wait leave that core to
# the other worker (the same numbers; only how idle threads wait changes).
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# The slowest files first, so that two workers finish together (longest job first).
SLOW_FIRST = [
    "test_results_recompute.py",
    "test_reliability.py",
    "test_concurrency.py",
    "test_distributed.py",
    "test_behaviour.py",
    "test_bad_input.py",
    "test_tasks.py",
    "test_custom_task.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a serial run keeps the order it was given (`make mutants` puts quick files first)

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept


@pytest.fixture(autouse=True)
def no_network() -> Iterator[None]:
    """Fail the test if it, or anything it started, tried to reach the network."""
    start = _net_log.stat().st_size
    yield
    with open(_net_log) as f:
        f.seek(start)
        attempts = f.read().strip()
    if attempts:
        pytest.fail(f"the test tried to reach the network:\n{attempts}")


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


def micro_config(tmp: Path, *overrides: str, wandb: str = "disabled"):
    """The config ``run_cli`` would run, composed in-process with Hydra's API."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                "scale=micro",
                f"wandb.mode={wandb}",
                f"cache_dir={tmp / 'cache'}",
                f"results_dir={tmp / 'results'}",
                *overrides,
            ],
        )


def run_in_process(
    args: list[str], tmp: Path, env: dict | None = None, wandb: str = "disabled"
) -> subprocess.CompletedProcess:
    """What ``run_cli`` does, without starting a new Python (5 s of imports per call):
    the same overrides composed with Hydra's API and the same ``cli`` entry point.
    For single runs only (no ``-m``); the return code is ``cli``'s exit code."""
    from pipeline.orchestration.main import cli

    saved = dict(os.environ)
    os.environ.update(
        {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": wandb, **(env or {})}
    )
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cfg = micro_config(tmp, *args, wandb=wandb)
            try:
                cli(cfg)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def ledger(tmp: Path) -> list[dict]:
    path = tmp / "cache" / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture
def micro_dir(tmp_path: Path) -> Path:
    return tmp_path
