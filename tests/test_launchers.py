"""Launcher configs: conf/hydra/launcher/slurm.yaml composes with the values it documents, and
the submitit parameters Hydra derives from it (what would go to sbatch) are the ones the yaml
and the command line ask for. Nothing is submitted: submitit.AutoExecutor is replaced by a
recorder that stops at map_array. The joblib launcher composes too."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf

import pipeline  # noqa: F401 - registers the cwd and project_root resolvers
from pipeline import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"
SLURM_TARGET = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
JOBLIB_TARGET = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"

# What conf/hydra/launcher/slurm.yaml promises (submitit_folder is checked separately).
SLURM_DEFAULTS = {
    "_target_": SLURM_TARGET,
    "partition": None,
    "gpus_per_node": 1,
    "timeout_min": 240,
    "mem_gb": 64,
    "cpus_per_task": 8,
    "nodes": 1,
    "tasks_per_node": 1,
    "array_parallelism": 16,
    "max_num_timeout": 3,
    "account": None,
    "qos": None,
    "setup": None,
    "name": "odpo-sentiment",
}
SWEEP = [["loss.beta=0.1", "seed=0"], ["loss.beta=0.1", "seed=1"]]
SWEEP += [["loss.beta=0.5", "seed=0"], ["loss.beta=0.5", "seed=1"]]


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


class Submitted(Exception):
    """Raised by the fake executor where the real one would call sbatch."""


class FakeExecutor:
    """Stands in for submitit.AutoExecutor: records what the launcher asks of it."""

    instances: list[FakeExecutor] = []

    def __init__(self, **kwargs: Any) -> None:
        self.init = kwargs
        self.updates: list[dict] = []
        self.jobs: list[tuple] = []
        FakeExecutor.instances.append(self)

    def update_parameters(self, **kwargs: Any) -> None:
        self.updates.append(kwargs)

    @property
    def params(self) -> dict:
        merged: dict = {}
        for update in self.updates:
            merged.update(update)
        return merged

    def map_array(self, fn: Any, *iterables: Any) -> None:
        self.jobs = list(zip(*iterables, strict=True))
        raise Submitted(f"{len(self.jobs)} jobs")


@pytest.fixture
def fake_submitit(monkeypatch: pytest.MonkeyPatch) -> type[FakeExecutor]:
    FakeExecutor.instances = []
    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    return FakeExecutor


def _launch(cfg: DictConfig, job_overrides: list[list[str]]) -> FakeExecutor:
    """Instantiate and set up the launcher as Hydra does, launch, return the executor it built."""
    context = HydraContext(
        config_loader=ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF))),
        callbacks=Callbacks(),
    )

    def task(_cfg: DictConfig) -> None:
        raise AssertionError("the task must not run in the submitting process")

    launcher = Plugins.instance().instantiate_launcher(
        hydra_context=context, task_function=task, config=cfg
    )
    assert type(launcher).__name__ == "SlurmLauncher"
    with pytest.raises(Submitted):
        launcher.launch(job_overrides, initial_job_idx=0)
    (executor,) = FakeExecutor.instances
    return executor


def _slurm_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "hydra/launcher=slurm",
        f"root={tmp_path}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *extra,
    ]


# --- (a) composition ------------------------------------------------------------------------


def test_slurm_yaml_documents_every_key():
    text = (CONF / "hydra" / "launcher" / "slurm.yaml").read_text()
    assert text.startswith("# @package hydra.launcher")
    keys = [*SLURM_DEFAULTS, "submitit_folder"]
    for key in keys:
        if key == "_target_":
            continue
        (line,) = [ln for ln in text.splitlines() if ln.startswith(f"{key}:")]
        assert "#" in line, f"{key} has no comment"


def test_slurm_launcher_composes_with_its_defaults(tmp_path):
    cfg = _compose(_slurm_overrides(tmp_path))
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    for key, value in SLURM_DEFAULTS.items():
        assert launcher[key] == value, key
    assert launcher["submitit_folder"] == f"{tmp_path}/.cache/submitit/%j"
    # The rest of the plugin's schema is still there (inherited from submitit_slurm).
    for key in ("signal_delay_s", "additional_parameters", "constraint", "gres"):
        assert key in launcher, key
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "slurm"


def test_slurm_submitit_folder_follows_root():
    cfg = _compose(["hydra/launcher=slurm"])
    folder = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)["submitit_folder"]
    assert folder == f"{os.getcwd()}/.cache/submitit/%j"


def test_slurm_overrides_take_effect(tmp_path):
    cfg = _compose(
        _slurm_overrides(
            tmp_path,
            "hydra.launcher.partition=a100",
            "hydra.launcher.timeout_min=30",
            "hydra.launcher.account=lab",
            "hydra.launcher.qos=high",
            "hydra.launcher.array_parallelism=4",
            "hydra.launcher.setup=[module load cuda]",
        )
    )
    launcher = cfg.hydra.launcher
    assert launcher.partition == "a100"
    assert launcher.timeout_min == 30
    assert launcher.account == "lab"
    assert launcher.qos == "high"
    assert launcher.array_parallelism == 4
    assert list(launcher.setup) == ["module load cuda"]
    assert launcher.gpus_per_node == 1  # untouched keys keep the yaml's values
    assert launcher.mem_gb == 64


def test_paper_usage_composes():
    """The command the README gives, as far as composition goes."""
    cfg = _compose(
        [
            "experiment=sentiment",
            "scale=paper",
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
        ]
    )
    assert cfg.hydra.launcher.partition == "gpu"
    assert cfg.device == "cuda"
    assert cfg.hydra.sweeper.params["loss.beta"].startswith("0.1,")


# --- (b) what would be submitted ------------------------------------------------------------


def test_slurm_submission_parameters(tmp_path, fake_submitit):
    cfg = _compose(_slurm_overrides(tmp_path))
    executor = _launch(cfg, SWEEP)
    assert executor.init == {
        "cluster": "slurm",
        "folder": f"{tmp_path}/.cache/submitit/%j",
        "slurm_max_num_timeout": 3,
    }
    assert len(executor.updates) == 1
    params = executor.params
    expected = {
        "slurm_partition": None,
        "gpus_per_node": 1,
        "timeout_min": 240,
        "mem_gb": 64,
        "cpus_per_task": 8,
        "nodes": 1,
        "tasks_per_node": 1,
        "slurm_array_parallelism": 16,
        "slurm_account": None,
        "slurm_qos": None,
        "slurm_setup": None,
        "stderr_to_stdout": False,
        "name": "odpo-sentiment",
    }
    for key, value in expected.items():
        assert params[key] == value, key
    assert "slurm_max_num_timeout" not in params  # an executor argument, not an sbatch one
    # One array task per sweep point, each carrying its overrides and its job number.
    assert [list(job[0]) for job in executor.jobs] == SWEEP
    assert [job[2] for job in executor.jobs] == [0, 1, 2, 3]
    assert (tmp_path / "sweep").is_dir()


def test_slurm_submission_parameters_follow_overrides(tmp_path, fake_submitit):
    cfg = _compose(
        _slurm_overrides(
            tmp_path,
            "hydra.launcher.partition=a100",
            "hydra.launcher.timeout_min=30",
            "hydra.launcher.gpus_per_node=2",
            "hydra.launcher.mem_gb=32",
            "hydra.launcher.cpus_per_task=4",
            "hydra.launcher.array_parallelism=2",
            "hydra.launcher.max_num_timeout=5",
            "hydra.launcher.account=lab",
            "hydra.launcher.qos=high",
            "hydra.launcher.setup=[module load cuda,source .venv/bin/activate]",
        )
    )
    executor = _launch(cfg, SWEEP[:2])
    assert executor.init["slurm_max_num_timeout"] == 5
    params = executor.params
    assert params["slurm_partition"] == "a100"
    assert params["timeout_min"] == 30
    assert params["gpus_per_node"] == 2
    assert params["mem_gb"] == 32
    assert params["cpus_per_task"] == 4
    assert params["slurm_array_parallelism"] == 2
    assert params["slurm_account"] == "lab"
    assert params["slurm_qos"] == "high"
    assert params["slurm_setup"] == ["module load cuda", "source .venv/bin/activate"]
    assert len(executor.jobs) == 2


def test_slurm_parameters_make_a_valid_sbatch_script(tmp_path, fake_submitit, monkeypatch):
    """Replay the recorded calls into the real submitit executor (which validates every name
    and type) and render the sbatch script it would submit; a stub srun on PATH lets it
    believe it is on a cluster. Nothing is submitted."""
    cfg = _compose(
        _slurm_overrides(tmp_path, "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30")
    )
    recorded = _launch(cfg, SWEEP)
    monkeypatch.undo()  # the real AutoExecutor again

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    real = submitit.AutoExecutor(**recorded.init)
    real.update_parameters(**recorded.params)
    slurm = real._executor
    assert slurm.max_num_timeout == 3
    slurm.parameters["map_count"] = len(SWEEP)  # what an array submission adds
    script = slurm._make_submission_file_text("python -m submitit.core._submit", "uid")
    lines = set(script.splitlines())
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=30",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=64GB",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --array=0-3%4",  # 4 points, at most array_parallelism (16) at once
        "#SBATCH --signal=USR2@120",
        "#SBATCH --job-name=odpo-sentiment",
    ):
        assert line in lines, f"{line!r} not in:\n{script}"
    assert not any(ln.startswith(("#SBATCH --account", "#SBATCH --qos")) for ln in lines)
    assert f"#SBATCH --output={tmp_path}/.cache/submitit/%A_%a/%A_%a_0_log.out" in lines


def test_cli_multirun_submits_the_readme_command(tmp_path, fake_submitit, monkeypatch):
    """The real entry point: `python -m pipeline -m experiment=sentiment scale=paper
    hydra/launcher=slurm hydra.launcher.partition=gpu` (sliced to 4 points) goes through
    Hydra's sweeper to the SLURM launcher and stops where sbatch would run."""
    from pipeline.orchestration.main import main

    argv = [
        "pipeline",
        "-m",
        "experiment=sentiment",
        "scale=paper",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "n_pairs=5000",
        "loss=odpo",
        "loss.beta=0.1,0.5",
        "seed=0,1",
        f"root={tmp_path}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "wandb.mode=disabled",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # let the sentinel through instead of exit(1)
    try:
        with pytest.raises(Submitted):
            main()
    finally:
        GlobalHydra.instance().clear()
    (executor,) = fake_submitit.instances
    assert executor.init["folder"] == f"{tmp_path}/.cache/submitit/%j"
    assert executor.params["slurm_partition"] == "gpu"
    assert executor.params["gpus_per_node"] == 1
    points = sorted(
        sorted(o for o in job[0] if o.startswith(("seed", "loss.beta"))) for job in executor.jobs
    )
    assert points == sorted(sorted(p) for p in SWEEP)
    assert all("scale=paper" in job[0] for job in executor.jobs)


# --- (c) joblib ---------------------------------------------------------------------------


def test_joblib_launcher_composes():
    cfg = _compose(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == JOBLIB_TARGET
    assert launcher.n_jobs == 2
    assert launcher.prefer == "processes"
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "joblib"
    assert cfg.threads == 2  # fixed by the embedded scale
