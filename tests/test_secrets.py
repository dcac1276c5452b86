"""Credentials come from the environment only: a key set there is written nowhere (cache,
results, Hydra and W&B folders, console), and a config key that looks like a credential
is refused at start-up without its value being printed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline import PROJECT_ROOT
from pipeline.orchestration.validate import credential_keys, looks_like_credential
from tests.conftest import ROOT, run_cli, run_in_process

# Folders a run may write to outside the test's own: Hydra's defaults and a stray W&B dir.
OTHER_OUTPUTS = ("outputs", "multirun", "wandb", ".cache/hydra")


def fake_secret() -> str:
    return f"fake-secret-{uuid.uuid4().hex}"


def files_holding(needle: bytes, roots: list[Path], since: float = 0.0) -> list[Path]:
    """Every regular file under ``roots`` (binary ones included) modified at or after
    ``since`` whose bytes contain ``needle``."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_symlink() or not path.is_file() or path.stat().st_mtime < since:
                continue
            if needle in path.read_bytes():
                found.append(path)
    return found


def test_api_key_from_the_environment_is_written_nowhere(tmp_path: Path) -> None:
    secret = fake_secret()
    # Everything W&B keeps outside the run folder (settings, caches, temp files) also goes
    # under tmp_path, so the search below sees it.
    env = {"WANDB_API_KEY": secret}
    for var, name in (
        ("WANDB_CONFIG_DIR", "wandb_config"),
        ("WANDB_CACHE_DIR", "wandb_cache"),
        ("WANDB_DATA_DIR", "wandb_data"),
        ("TMPDIR", "tmp"),
    ):
        (tmp_path / name).mkdir()
        env[var] = str(tmp_path / name)
    # A value that is meant to be logged: the search must find it in W&B's (binary) files,
    # or finding no secret would prove nothing.
    marker = f"marker-{uuid.uuid4().hex}"
    start = time.time()
    done = run_cli([f"experiment_name={marker}"], tmp_path, env=env, wandb="offline")

    wandb_dir = tmp_path / "cache" / "wandb"
    assert list(wandb_dir.rglob("offline-run-*")), "no W&B run was written"
    assert any(p.suffix == ".wandb" for p in files_holding(marker.encode(), [wandb_dir]))
    assert (tmp_path / "results" / "runs.csv").is_file()
    assert secret not in done.stdout and secret not in done.stderr
    leaks = files_holding(secret.encode(), [tmp_path])
    leaks += files_holding(
        secret.encode(), [ROOT / d for d in OTHER_OUTPUTS if (ROOT / d).is_dir()], since=start
    )
    assert not leaks, leaks


@pytest.mark.parametrize(
    "key", ["+wandb.api_key", "+hf_token", "+scale.model.token", "+data.Password", "+apiKey"]
)
def test_credential_in_the_config_is_refused_without_echo(tmp_path: Path, key: str) -> None:
    secret = fake_secret()
    # One through the real command line; the others through the same entry point in-process.
    if key == "+wandb.api_key":
        done = run_cli([f"{key}={secret}"], tmp_path, check=False)
    else:
        done = run_in_process([f"{key}={secret}"], tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and key.lstrip("+") in last, last
    assert "environment variable" in last
    assert secret not in done.stdout and secret not in done.stderr
    assert not (tmp_path / "cache" / "data").exists()  # refused before any work
    assert not files_holding(secret.encode(), [tmp_path])


@pytest.mark.parametrize(
    "name",
    ["api_key", "apiKey", "APIKEY", "WANDB_API_KEY", "token", "hf_token", "authToken"]
    + ["secret", "client_secret", "password", "DB_PASSWORD", "passwd"],
)
def test_credential_names(name: str) -> None:
    assert looks_like_credential(name)


@pytest.mark.parametrize(
    "name",
    ["max_new_tokens", "prompt_tokens", "pad_token", "bos_token", "tokenizer", "entity"],
)
def test_names_that_are_not_credentials(name: str) -> None:
    assert not looks_like_credential(name)


def test_credential_keys_anywhere_in_the_tree() -> None:
    cfg = OmegaConf.create(
        {
            "wandb": {"api_key": None, "project": "odpo"},  # null: nothing to leak
            "hub": [{"name": "a", "Token": "${oc.env:HF_TOKEN}"}],  # unresolved still counts
            "model": {"auth": {"password": "x"}},
        }
    )
    assert credential_keys(cfg) == ["hub.0.Token", "model.auth.password"]


@pytest.mark.parametrize("scale", sorted(p.stem for p in (PROJECT_ROOT / "conf/scale").glob("*")))
def test_shipped_configs_hold_no_credential_keys(scale: str) -> None:
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"scale={scale}", "wandb=online"])
    assert credential_keys(cfg) == []
