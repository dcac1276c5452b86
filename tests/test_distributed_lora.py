"""FSDP with LoRA adapters: two processes on this CPU (torchrun, gloo, FSDP2) train a tiny
LLaMA's adapters as one process does, save the adapter alone, and resume from a killed
launch's checkpoint (the adapters and their optimizer state, as a one-process run writes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.modeling import lora
from pipeline.orchestration import graph as plan
from tests import tiny_llama
from tests.conftest import micro_config, run_in_process
from tests.test_distributed import LOSS_ABS, WEIGHT_ABS, launch, train_log

# 30 pairs in batches of 16 (16 and 14), two epochs: four steps.
ARGS_OF = ["loss=dpo", "n_pairs=30", "scale.train.epochs=2", "model=hf"]


def _adapter(tmp: Path) -> dict[str, torch.Tensor]:
    (path,) = (tmp / "cache" / "train").glob("*/model/adapter_model.safetensors")
    return load_file(path)


def test_two_processes_train_the_one_process_adapters(tmp_path: Path) -> None:
    llama = tiny_llama.build(tmp_path / "lm")
    args = [*ARGS_OF, f"model.path={llama}", "precision=fp32"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_in_process(args, one).returncode == 0
    keys = plan.stage_keys(micro_config(one, *args))
    shutil.copytree(one / "cache", two / "cache")
    shutil.rmtree(two / "cache" / "train")
    shutil.rmtree(two / "cache" / "evaluate" / keys["evaluate"])
    (two / "cache" / "ledger.jsonl").unlink()

    killed = launch(two, 2, args, kill_at="train:step:1")
    assert killed.returncode != 0, killed.stdout[-2000:]
    state = two / "cache" / "train" / f".ckpt-{keys['train']}" / "state.pt"
    saved = torch.load(state, weights_only=True)
    assert saved["step"] == 2 and saved["model"] and all("lora_" in k for k in saved["model"])

    done = launch(two, 2, args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resumed from the checkpoint after step 1" in done.stdout
    a, b = train_log(one), train_log(two)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert float(y["train/loss"]) == pytest.approx(float(x["train/loss"]), abs=LOSS_ABS)
    wa, wb = _adapter(one), _adapter(two)
    assert wa.keys() == wb.keys() and wa
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < WEIGHT_ABS
    (policy,) = (two / "cache" / "train").glob("*/model")
    assert lora.is_adapter(policy) and not list(policy.glob("model*.safetensors"))
