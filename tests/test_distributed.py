"""Training sharded over processes (``distributed=fsdp``, pipeline/modeling/distributed.py).

The main test runs the real pipeline at micro scale as two processes on this CPU
(torchrun, gloo, FSDP2 through accelerate) and holds it to a one-process run of the
same config: every logged step's loss within 1e-5 and grad norm within 1e-4 relative
(measured: 3.6e-7 and 3.5e-7), and the saved policy within 2e-4 (measured: 4.7e-5 after
8 AdamW steps at lr 1e-3; float sums in another order, so not bit-identical). The batches
include ones where rank 1 has no real pair, gradient accumulation and a second epoch;
the two-process run is killed after a checkpoint and resumed. The loss curve alone would
not catch a wrongly scaled gradient: with each rank's loss not multiplied by the world
size (half the gradient) the loss moved by 3e-6 only, the grad norm by half.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import get_constant_schedule_with_warmup

from pipeline.infra.cache import Cache
from pipeline.infra.errors import ConfigError
from pipeline.modeling import distributed, fsdp, models
from pipeline.modeling.checkpoint import restore_loop
from pipeline.modeling.optim import make_optimizer
from pipeline.orchestration import fingerprint as fingerprints
from pipeline.orchestration import graph as plan
from pipeline.orchestration.validate import validate
from scripts import chaos
from tests.conftest import ROOT, ledger, micro_config, run_in_process

# 49 pairs in batches of 16: 16, 16, 16 and 1 each epoch; in each 1-pair batch rank 1 of 2
# holds no real pair (it runs a zero-weight one). Two epochs, two micro-batches per step.
ARGS = ["n_pairs=49", "scale.train.epochs=2", "scale.train.grad_accum=2"]
LOSS_ABS, GRAD_NORM_REL, WEIGHT_ABS = 1e-5, 1e-4, 2e-4


def launch(tmp: Path, nproc: int, args: list[str], kill_at: str | None = None):
    """``torchrun --nproc_per_node <nproc> -m pipeline distributed=fsdp ...`` at micro scale."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", "-m", "pipeline",
        "scale=micro", "wandb.mode=disabled", "distributed=fsdp",
        f"cache_dir={tmp / 'cache'}", f"results_dir={tmp / 'results'}",
        f"hydra.run.dir={tmp / 'hydra'}", *args,
    ]  # fmt: skip
    env = chaos.environment(kill_at)  # offline, W&B off, a kill point or none
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def train_log(tmp: Path) -> list[dict]:
    (path,) = (tmp / "cache" / "train").glob("*/train_log.csv")
    with open(path) as f:
        return list(csv.DictReader(f))


def weights(tmp: Path) -> dict[str, torch.Tensor]:
    (path,) = (tmp / "cache" / "train").glob("*/model/model.safetensors")
    return load_file(path)


def test_two_processes_train_the_one_process_curve(tmp_path: Path) -> None:
    began = time.perf_counter()
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_in_process(ARGS, one).returncode == 0
    # Everything before training from the one-process cache, so the two-process launch
    # trains (and evaluates its policy) and follows rank 0 through the other stages.
    keys = plan.stage_keys(micro_config(one, *ARGS))
    shutil.copytree(one / "cache", two / "cache")
    shutil.rmtree(two / "cache" / "train")
    shutil.rmtree(two / "cache" / "evaluate" / keys["evaluate"])
    (two / "cache" / "ledger.jsonl").unlink()

    killed = launch(two, 2, ARGS, kill_at="train:step:4")  # rank 0 dies after step 4's checkpoint
    assert killed.returncode != 0, killed.stdout[-2000:]
    state = two / "cache" / "train" / f".ckpt-{keys['train']}" / "state.pt"
    saved = torch.load(state, weights_only=True)
    assert saved["step"] == 5
    # The file a one-process run writes (full tensors, the optimizer keyed by number):
    # it restores into an unsharded policy as a one-process checkpoint does.
    policy = models.load_model(next((two / "cache" / "sft").glob("*/model")))
    opt = make_optimizer("adamw", policy.parameters(), 1e-3)
    rng = torch.get_rng_state()
    restore_loop(saved, policy, opt, get_constant_schedule_with_warmup(opt, 0), torch.Generator())
    torch.set_rng_state(rng)
    assert all(opt.state[p]["exp_avg"].shape == p.shape for p in policy.parameters())

    done = launch(two, 2, ARGS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "resumed from the checkpoint after step 4" in out
    held = [line for line in out.splitlines() if "FSDP over 2 processes" in line]
    assert len(held) == 1, out[-3000:]  # rank 0 alone speaks
    words = held[0].split()
    assert int(words[-4]) < int(words[-2])  # rank 0 holds a shard, not the whole policy

    a, b = train_log(one), train_log(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [str(i) for i in range(8)]
    for x, y in zip(a, b, strict=True):
        assert float(y["train/loss"]) == pytest.approx(float(x["train/loss"]), abs=LOSS_ABS)
        assert float(y["train/margins"]) == pytest.approx(float(x["train/margins"]), abs=LOSS_ABS)
        norm_a, norm_b = float(x["train/grad_norm"]), float(y["train/grad_norm"])
        assert norm_b == pytest.approx(norm_a, rel=GRAD_NORM_REL)
    assert float(a[-1]["train/loss"]) != float(a[0]["train/loss"])  # it trained

    wa, wb = weights(one), weights(two)
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= WEIGHT_ABS
    model = lambda tmp: next((tmp / "cache" / "train").glob("*/model"))  # noqa: E731
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        assert (model(one) / name).read_bytes() == (model(two) / name).read_bytes(), name

    # Only rank 0 writes the ledger; the other stages were reused, training and the
    # policy's evaluation computed once; the run's row names the same keys.
    statuses = Counter((e["stage"], e["status"]) for e in ledger(two) if e["stage"] != "plot")
    assert statuses[("train", "computed")] == 1
    assert statuses[("evaluate", "computed")] == 1
    assert statuses[("data", "reused")] == 2  # once per launch
    assert {status for (stage, status) in statuses if stage not in ("train", "evaluate")} == {
        "reused"
    }
    table = (two / "results" / "runs.csv").read_text().splitlines()
    rows = {r["loss"]: r for r in csv.DictReader(table)}
    assert rows["odpo"]["train_key"] == keys["train"]
    assert time.perf_counter() - began < 240


# ---- the pieces, in this process ----------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_each_rank_gets_its_share_and_the_same_number_of_rows(world: int, n: int) -> None:
    idx = np.arange(100, 100 + n)
    shares = [fsdp.local_rows(idx, r, world) for r in range(world)]
    assert len({len(rows) for rows, _ in shares}) == 1  # the same passes on every rank
    real = np.concatenate([rows[w == 1] for rows, w in shares])
    assert real.tolist() == idx.tolist()  # every pair once, in order
    assert all(set(rows[w == 0]) <= {idx[0]} for rows, w in shares)  # padding: a real pair


def test_the_distributed_setting_changes_no_key_and_no_table(tmp_path: Path) -> None:
    one, fsdp = micro_config(tmp_path), micro_config(tmp_path, "distributed=fsdp")
    assert plan.stage_keys(fsdp) == plan.stage_keys(one)
    assert fingerprints.fingerprint(fsdp) == fingerprints.fingerprint(one)


def test_a_launch_and_the_setting_must_agree(tmp_path: Path, monkeypatch) -> None:
    for var in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="launcher"):
        validate(micro_config(tmp_path, "distributed=fsdp"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="distributed=none"):
        validate(micro_config(tmp_path))
    with pytest.raises(ConfigError, match="device=cuda"):
        distributed.check(micro_config(tmp_path, "distributed=fsdp", "device=cuda:1"))
    assert not distributed.is_main()


def test_a_follower_waits_for_rank_0_and_never_builds(tmp_path: Path) -> None:
    import threading

    leader, follower = Cache(tmp_path), Cache(tmp_path, follow=True, poll=0.05)
    got = {}

    def follow() -> None:
        got["artifact"] = follower.stage("s", {"a": 1}, [], lambda out: pytest.fail("built"))

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.3)
    assert "artifact" not in got  # still waiting: nothing is published

    def build(out: Path) -> dict:
        (out / "x").write_text("1")
        return {"n": 1}

    made = leader.stage("s", {"a": 1}, [], build)
    thread.join(10)
    assert got["artifact"].path == made.path and got["artifact"].info == {"n": 1}
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == ["computed"]  # the follower wrote none


def test_slurm_tasks_become_ranks(monkeypatch) -> None:
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT", "CUDA_VISIBLE_DEVICES"):  # fmt: skip
        monkeypatch.setenv(var, "unset")  # restored after the test
        monkeypatch.delenv(var)
    slurm = {
        "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "42", "SLURM_NTASKS": "4",
        "SLURM_PROCID": "3", "SLURM_LOCALID": "3", "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "gpu-node7",
    }  # fmt: skip
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    distributed.adopt_slurm_tasks(micro_config(Path("/tmp"), "distributed=fsdp"))
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == (
        "3", "4", "3",
    )  # fmt: skip
    assert os.environ["MASTER_ADDR"] == "gpu-node7"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # every GPU stays visible
