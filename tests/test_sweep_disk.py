"""Paper-scale sweeps that fit a disk, and tables that cannot mix configurations.

- ``keep_weights=false`` deletes each trained policy once its evaluation is published
  (recorded in the manifest); a re-run reuses everything; an evaluation that cannot be
  reused trains the policy again.
- The disk a run or sweep needs is printed before it starts and a run that cannot fit
  is refused (``disk_free_gb`` pretends a small disk).
- A results folder holds one configuration: a run with another ``scale.train.lr`` is
  refused naming the key, leaving the table byte-identical; ``fresh_table=true``
  moves the old table aside and the new summary says what differs.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.orchestration import disk
from pipeline.orchestration import fingerprint as fingerprints
from pipeline.report import runs as results
from tests.conftest import ledger, micro_config, run_cli, run_in_process

SWEEP = ["-m", "loss.beta=0.1,0.5"]


def policy_weights(tmp: Path) -> list[Path]:
    return sorted((tmp / "cache" / "train").glob("*/model/*.safetensors"))


def test_without_keep_weights_no_policy_stays_and_a_rerun_recomputes_nothing(
    tmp_path: Path,
) -> None:
    run_cli([*SWEEP, "keep_weights=false"], tmp_path)
    assert policy_weights(tmp_path) == []
    trains = [p for p in (tmp_path / "cache" / "train").iterdir() if not p.name.startswith(".")]
    trains = [p for p in trains if p.is_dir()]
    assert len(trains) == 2
    for path in trains:
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["info"]["weights_deleted"] is True
        assert not any(name.endswith(".safetensors") for name in manifest["files"])
        assert (path / "train_log.csv").is_file()  # the curves stay
    assert list((tmp_path / "cache" / "sft").glob("*/model/*.safetensors"))  # SFT kept
    table = (tmp_path / "results" / "runs.csv").read_bytes()

    before = len(ledger(tmp_path))
    run_cli([*SWEEP, "keep_weights=false"], tmp_path)
    again = ledger(tmp_path)[before:]
    assert {e["status"] for e in again} == {"reused"}, again
    assert (tmp_path / "results" / "runs.csv").read_bytes() == table


def test_an_evaluation_that_needs_deleted_weights_trains_again(tmp_path: Path) -> None:
    assert run_in_process(["keep_weights=false"], tmp_path).returncode == 0
    assert policy_weights(tmp_path) == []
    before = len(ledger(tmp_path))
    # A new evaluation setting: the training run is the same, its weights are gone.
    done = run_in_process(
        ["keep_weights=false", "scale.eval.seed=99", "fresh_table=true"], tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "weights were deleted; training again" in done.stdout
    statuses = Counter((e["stage"], e["status"]) for e in ledger(tmp_path)[before:])
    assert statuses[("train", "computed")] == 1 and statuses[("evaluate", "computed")] == 2
    assert policy_weights(tmp_path) == []


def test_keep_weights_keeps_them_by_default_at_small_scales(tmp_path: Path) -> None:
    assert micro_config(tmp_path).keep_weights is True
    assert run_in_process([], tmp_path).returncode == 0
    assert len(policy_weights(tmp_path)) == 1


def test_paper_scale_deletes_policies_by_default(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from tests.conftest import ROOT

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        assert compose("config", overrides=["scale=paper"]).keep_weights is False


def test_a_sweep_that_cannot_fit_is_refused_before_it_starts(tmp_path: Path) -> None:
    done = run_cli([*SWEEP, "disk_free_gb=0.000001"], tmp_path, check=False)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "GB" in errors[0] and "free" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert "[disk] this sweep of 2 runs needs about" in done.stdout
    assert ledger(tmp_path) == []  # nothing was computed


def test_a_single_run_that_cannot_fit_is_refused(tmp_path: Path) -> None:
    done = run_in_process(["disk_free_gb=0.000001"], tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: this run needs about")
    assert ledger(tmp_path) == []
    assert run_in_process(["disk_free_gb=100"], tmp_path).returncode == 0


def test_disk_estimate_against_hand_counts(tmp_path: Path) -> None:
    cfg = micro_config(tmp_path)
    n = disk.model_parameters(cfg)
    m = cfg.scale.model  # GPT-2: embeddings, 12 d^2 + 13 d per block, final norm
    d = m.n_embd
    assert n == m.vocab_size * d + m.n_positions * d + m.n_layer * (12 * d * d + 13 * d) + 2 * d
    OmegaConf.update(cfg, "keep_weights", True)
    kept = disk.estimate(cfg, n_runs=10, n_seeds=2, n_params=1_000_000)
    assert kept.sft == 4e6 and kept.policies == 10 * 4e6
    assert kept.checkpoints == 3 * 4e6  # model + AdamW's two moments, one worker
    OmegaConf.update(cfg, "keep_weights", False)
    OmegaConf.update(cfg, "scale.train.share_prefix", False)
    dropped = disk.estimate(cfg, n_runs=10, n_seeds=2, workers=2, n_params=1_000_000)
    assert dropped.policies == 2 * 4e6 and dropped.checkpoints == 2 * 3 * 4e6
    s, e = cfg.scale.sample, cfg.scale.eval
    tokens = s.prompt_tokens + 1 + s.max_new_tokens
    assert dropped.samples == (2 * s.n_prompts * s.n_samples + 11 * e.n_prompts) * tokens * 12
    assert dropped.prefixes == 0 and "prefix" not in dropped.describe()
    # Shared prefixes keep one loop state per run (model + AdamW's moments), unless the
    # warm-up is by fraction, where no run is another's prefix.
    OmegaConf.update(cfg, "scale.train.share_prefix", True)
    shared = disk.estimate(cfg, n_runs=10, n_seeds=2, workers=2, n_params=1_000_000)
    assert shared.prefixes == 10 * 3 * 4e6
    assert shared.total == dropped.total + shared.prefixes
    assert "shared prefix states 0.12" in shared.describe()
    OmegaConf.update(cfg, "scale.train.warmup_fraction", 0.1, force_add=True)
    assert disk.estimate(cfg, n_runs=10, n_params=1_000_000).prefixes == 0


def test_a_table_refuses_a_run_of_another_configuration(tmp_path: Path) -> None:
    assert run_in_process([], tmp_path).returncode == 0
    table = tmp_path / "results" / "runs.csv"
    before = table.read_bytes()
    fingerprint = (tmp_path / "results" / "fingerprint.json").read_bytes()
    done = run_in_process(["scale.train.lr=2e-3"], tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "scale.train.lr" in lines[0] and "results_dir" in lines[0] and "fresh_table" in lines[0]
    assert table.read_bytes() == before
    assert (tmp_path / "results" / "fingerprint.json").read_bytes() == fingerprint
    # A sweep axis is not a configuration change: another beta joins the same table.
    assert run_in_process(["loss.beta=0.5"], tmp_path).returncode == 0


def test_fresh_table_moves_the_old_one_and_the_summary_says_what_differs(tmp_path: Path) -> None:
    assert run_in_process([], tmp_path).returncode == 0
    old = json.loads((tmp_path / "results" / "fingerprint.json").read_text())
    old_table = (tmp_path / "results" / "runs.csv").read_bytes()
    done = run_in_process(["scale.train.lr=2e-3", "fresh_table=true"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "results" / "previous" / old["id"] / "runs.csv").read_bytes() == old_table
    new = json.loads((tmp_path / "results" / "fingerprint.json").read_text())
    assert new["id"] != old["id"] and new["replaces"] == {
        "id": old["id"],
        "differing": ["scale.train.lr"],
    }
    from pipeline.report.digest import write_summary

    summary = write_summary(tmp_path / "results" / "runs.csv", tmp_path / "out.md", "t").read_text()
    assert f"fingerprint `{new['id']}`" in summary and "`scale.train.lr`" in summary


def test_fingerprint_ignores_axes_and_paths_but_not_settings(tmp_path: Path) -> None:
    base = fingerprints.fingerprint(micro_config(tmp_path))
    for same in (["loss=dpo"], ["loss.beta=3"], ["seed=4", "n_pairs=50"], ["offset=diff"],
                 ["scale.train.log_every=5"], ["wandb.mode=offline"]):  # fmt: skip
        assert (
            fingerprints.fingerprint(micro_config(tmp_path / "other", *same))["id"] == base["id"]
        ), same
    for other, keys in (("scale.train.lr=2e-3", ["scale.train.lr"]), ("scale.sample.temperature=0.7",
                        ["scale.sample.temperature"]), ("precision=bf16", ["precision"]),
                        ("device=cuda", ["device", "precision"])):  # fmt: skip
        # On CUDA precision=auto means bf16: the fingerprint records what ran.
        changed = fingerprints.fingerprint(micro_config(tmp_path, other))
        assert fingerprints.differing(base, changed) == keys


@pytest.mark.parametrize("folder", ["sentiment", "ablation_scaling", "ablation_alpha", "toxicity"])
def test_committed_tables_record_the_fingerprint_of_their_experiment(folder: str) -> None:
    from hydra import compose, initialize_config_dir

    from tests.conftest import ROOT

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={folder}"])
    committed = results.read_fingerprint(ROOT / "results" / folder)
    assert committed is not None, f"results/{folder}/fingerprint.json is missing"
    assert committed["id"] == fingerprints.fingerprint(cfg)["id"]


def test_a_lora_policy_counts_its_adapters_not_a_whole_model(tmp_path: Path) -> None:
    cfg = micro_config(tmp_path, "model=smollm2")
    assert disk.model_parameters(cfg) == 134_515_008  # SmolLM2-135M, as its weights stage prints
    # By hand: per layer q, o 576 -> 576, k, v 576 -> 192, gate, up 576 -> 1536, down
    # 1536 -> 576; r (in + out) each, 30 layers, r = 16.
    per_layer = 2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536)
    assert disk.trained_parameters(cfg) == 16 * 30 * per_layer
    OmegaConf.update(cfg, "keep_weights", True)
    est = disk.estimate(cfg, n_runs=20, n_seeds=2)
    adapters = 4.0 * 16 * 30 * per_layer
    assert est.sft == 4.0 * 134_515_008 and est.policies == 20 * adapters
    assert est.checkpoints == 3 * adapters
    OmegaConf.update(cfg, "model.lora", None, merge=False)
    assert disk.trained_parameters(cfg) == 134_515_008  # full fine-tuning saves it all
