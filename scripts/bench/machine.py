"""The machine a benchmark ran on: CPU, memory, package versions, load, git commit (the
``machine`` entry of report.json)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata

from pipeline import PROJECT_ROOT

PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _git() -> dict:
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        changed = [line for line in run("status", "--porcelain").splitlines() if line.strip()]
        return {"commit": run("rev-parse", "--short", "HEAD"), "uncommitted_paths": len(changed)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_paths": None}


def machine(threads: int) -> dict:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": _memory_gb(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "versions": versions,
        "cuda_available": bool(torch.cuda.is_available()),
        "load_average_at_start": os.getloadavg()[0],
        "git": _git(),
    }
