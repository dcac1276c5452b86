"""Every Hydra config in conf/ composes, resolves and (where it can run offline) validates."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import pipeline  # noqa: F401 - registers the cwd and project_root resolvers
from pipeline import PROJECT_ROOT
from pipeline.infra.errors import ConfigError
from pipeline.orchestration.validate import validate

CONF = PROJECT_ROOT / "conf"
GROUPS = ("task", "scale", "loss", "offset", "wandb", "experiment")
# Groups in the root defaults list (experiment defaults to null).
IN_DEFAULTS = {"task", "scale", "scorer", "loss", "offset", "wandb", "experiment"}
SCALES = sorted(p.stem for p in (CONF / "scale").glob("*.yaml"))
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
BETAS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 3, 4, 5]


def _compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=return_hydra_config)


def _options() -> list[tuple[str, str]]:
    return [(group, p.stem) for group in GROUPS for p in sorted((CONF / group).glob("*.yaml"))]


def test_every_group_has_options():
    for group in GROUPS + ("scorer",):
        assert list((CONF / group).glob("*.yaml")), f"conf/{group} has no yaml"


@pytest.mark.parametrize(("group", "option"), _options(), ids=lambda v: str(v))
def test_every_option_composes_and_resolves(group, option):
    prefix = "" if group in IN_DEFAULTS else "+"
    cfg = _compose([f"{prefix}{group}={option}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    for key in ("task", "scale", "data", "scorer", "loss", "offset", "wandb"):
        assert key in resolved, key
    if group == "task":
        assert resolved["task"]["name"] == option
    elif group == "scale":
        assert resolved["scale"]["name"] == option
    elif group in ("loss", "offset"):
        assert resolved[group]["name"] == option
    elif group == "wandb":
        assert resolved["wandb"]["mode"] == option
    elif group == "experiment":
        assert resolved["experiment_name"] == option


@pytest.mark.parametrize(("task", "scale"), list(itertools.product(TASKS, SCALES)))
def test_every_task_sets_its_data_scorer_and_lengths_at_every_scale(task, scale):
    """A task file holds every scale's data and scorer; each resolves to a plain value."""
    from pipeline import tasks

    cfg = _compose([f"task={task}", f"scale={scale}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert tasks.get(cfg).name == task == resolved["task"]["name"]
    assert resolved["data"] and resolved["scale"]["sample"]["prompt_tokens"] > 0
    for node in ("data", "scorer"):
        for key, value in resolved[node].items():
            assert not (isinstance(value, str) and "${" in value), (node, key)


def test_scorer_files_are_chosen_by_name():
    # A scorer file replaces the task's scorer (scorer=keyword), and it composes.
    for extra in sorted(p.stem for p in (CONF / "scorer").glob("*.yaml")):
        assert _compose([f"scorer={extra}"]).scorer.name == extra


def test_default_config():
    cfg = _compose([])
    assert cfg.scale.name == "embedded"
    assert cfg.loss.name == "odpo"
    assert cfg.offset.name == "log_diff"
    assert cfg.wandb.mode == "offline"
    assert cfg.data.source == "rotten_tomatoes"
    assert cfg.scorer.name == "tfidf_logreg"


def test_micro_data_points_at_shipped_fixture():
    cfg = _compose(["scale=micro"])
    path = Path(cfg.data.path)
    assert path == PROJECT_ROOT / "tests" / "fixtures" / "sentiment_reviews.csv"
    assert path.is_file()


@pytest.mark.parametrize("scale", ["micro", "embedded"])
@pytest.mark.parametrize("loss", ["dpo", "odpo"])
def test_offline_scales_validate(monkeypatch, scale, loss):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _compose([f"scale={scale}", f"loss={loss}"])
    validate(cfg)


def test_experiment_validates_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for n_pairs in (5000, 7500, 10000):
        validate(_compose(["experiment=sentiment", f"n_pairs={n_pairs}"]))


def test_paper_scale_needs_the_hub_offline(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # An empty hub cache, so that a locally cached gpt2-large cannot hide the check.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    cfg = _compose(["scale=paper"])
    assert cfg.data.source == "hub"
    assert cfg.scorer.name == "hf_pipeline"
    with pytest.raises(ConfigError, match=r"scale\.model\.pretrained"):
        validate(cfg)


def test_validate_rejects_bad_values(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for override, key in [
        ("loss.beta=0", "loss.beta"),
        ("loss.alpha=-1", "loss.alpha"),
        ("n_pairs=100000", "n_pairs"),
        ("offset.name=nope", "offset.name"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate(_compose(["scale=micro", override]))


def test_sentiment_experiment_grid():
    cfg = _compose(["experiment=sentiment"], return_hydra_config=True)
    assert cfg.experiment_name == "sentiment"
    assert cfg.task.name == "sentiment"
    assert cfg.loss.name == "odpo"
    assert cfg.offset.name == "log_diff"
    params = cfg.hydra.sweeper.params
    assert set(params) == {"seed", "n_pairs", "loss", "loss.beta"}
    values = {k: str(v).split(",") for k, v in params.items()}
    assert [int(v) for v in values["seed"]] == [0, 1]
    assert [int(v) for v in values["n_pairs"]] == [5000, 7500, 10000]
    assert values["loss"] == ["dpo", "odpo"]
    assert [float(v) for v in values["loss.beta"]] == BETAS
    n_runs = 1
    for v in values.values():
        n_runs *= len(v)
    assert n_runs == 2 * 3 * 2 * 14 == 168


def test_experiment_command_in_its_comment_composes():
    # conf/experiment/sentiment.yaml documents `python -m pipeline -m experiment=sentiment`;
    # the override it shows must compose as written.
    text = (CONF / "experiment" / "sentiment.yaml").read_text()
    documented = [
        w for line in text.splitlines() if "python -m pipeline" in line for w in line.split()
    ]
    override = next(w.strip("`") for w in documented if w.strip("`+").startswith("experiment="))
    cfg = _compose([override])
    assert cfg.experiment_name == "sentiment"


def test_hydra_settings():
    cfg = _compose([], return_hydra_config=True)
    assert cfg.hydra.job.chdir is False
    assert cfg.hydra.callbacks.plot._target_ == "pipeline.orchestration.callbacks.PlotCallback"


@pytest.mark.parametrize(
    "path", sorted(CONF.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONF))
)
def test_every_yaml_has_a_comment(path):
    lines = [line.strip() for line in path.read_text().splitlines()]
    comments = [
        line for line in lines if line.startswith("#") and not line.startswith("# @package")
    ]
    assert comments, f"{path.relative_to(PROJECT_ROOT)} has no comment line"
