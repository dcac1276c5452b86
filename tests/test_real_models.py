"""Pretrained instruct models (conf/model/): a tiny LLaMA-architecture model with a ChatML
template (tests/tiny_llama.py) through the whole micro pipeline, with and without LoRA;
the adapter-disabled reference; a resumed LoRA run; bf16 autocast's first DPO loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from pipeline.modeling import lora, models, sequences
from pipeline.modeling import precision as precisions
from tests import tiny_llama
from tests.conftest import micro_config, run_cli, run_in_process


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama.build(tmp_path_factory.mktemp("llama") / "lm")


def _model_args(llama: Path, *extra: str) -> list[str]:
    # n_pairs 30: a random tiny model's samples tie often (39 distinct-score pairs here).
    return ["model=hf", f"model.path={llama}", "loss=dpo", "n_pairs=30", *extra]


def _artifact(tmp: Path, stage: str) -> Path:
    found = [p for p in (tmp / "cache" / stage).glob("*") if (p / "manifest.json").is_file()]
    assert len(found) == 1, found
    return found[0]


LORA_CHAT = ("model.chat_template=true",)


@pytest.fixture(scope="module")
def lora_run(llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One micro run of the tiny instruct model with LoRA and its chat template (shared)."""
    tmp = tmp_path_factory.mktemp("lora-run")
    done = run_in_process(_model_args(llama, *LORA_CHAT), tmp)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp


def test_llama_with_chat_template_and_lora_runs_end_to_end(lora_run: Path) -> None:
    tmp_path = lora_run
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert sorted(table["loss"]) == ["dpo", "sft"]
    assert set(table["base_model"]) == {"hf"}
    assert set(table["precision"]) == {precisions.resolve("auto", "cpu", cpu_bf16=True)}
    sft = _artifact(tmp_path, "sft") / "model"
    assert json.loads((sft / sequences.FORMAT_FILE).read_text()) == {"bos": False, "chat": True}
    policy = _artifact(tmp_path, "train") / "model"
    # The policy saved is the adapter, far smaller than the model, on the SFT folder.
    assert lora.is_adapter(policy) and lora.base_of(policy) == sft.resolve()
    assert not list(policy.glob("model*.safetensors"))
    adapter = (policy / "adapter_model.safetensors").stat().st_size
    assert adapter < (sft / "model.safetensors").stat().st_size
    # Prompts went through the template; the scored texts hold no template token.
    tok = models.load_tokenizer(sft)
    before, after = sequences.chat_frame(tok)
    evaluations = list((tmp_path / "cache" / "evaluate").glob("*/samples.json"))
    assert len(evaluations) == 2  # SFT's and the policy's
    for s in [s for e in evaluations for s in json.loads(e.read_text())]:
        ids = s["prompt_ids"]
        assert ids[: len(before)] == before and ids[-len(after) :] == after
        assert "<|im_start|>" not in s["text"] and "<|im_end|>" not in s["text"]
        assert not s["text"].startswith("user")  # nor the template's role text
    # Policy and reference computed alike (bf16 autocast on float32 weights where the CPU
    # has bf16): DPO's first loss is log 2.
    log = pd.read_csv(_artifact(tmp_path, "train") / "train_log.csv")
    assert abs(log["train/loss"].iloc[0] - math.log(2)) < 1e-3
    # SFT measured the loaded model on held-out text before and after.
    info = json.loads((_artifact(tmp_path, "sft") / "manifest.json").read_text())["info"]
    assert math.isfinite(info["heldout_loss_before"]) and math.isfinite(info["heldout_loss_after"])


def test_llama_without_lora_or_template_runs_end_to_end(llama: Path, tmp_path: Path) -> None:
    args = _model_args(llama, "model.lora=null", "model.chat_template=false", "precision=fp32")
    done = run_in_process(args, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sft = _artifact(tmp_path, "sft") / "model"
    # bos=auto: SmolLM2-like BOS <|im_start|> is a chat token, so plain text starts bare.
    assert json.loads((sft / sequences.FORMAT_FILE).read_text()) == {"bos": False, "chat": False}
    policy = _artifact(tmp_path, "train") / "model"
    assert not lora.is_adapter(policy) and (policy / "model.safetensors").is_file()
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert set(table["precision"]) == {"fp32"}


def test_adapter_disabled_reference_is_the_sft_model_exactly(llama: Path) -> None:
    sft = models.load_model(llama).eval()
    policy = lora.attach(models.load_model(llama), lora.spec({"r": 4, "alpha": 8}), seed=0)
    with torch.no_grad():  # move the adapters off zero, so the policy differs from SFT
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    prompts, responses = [[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14, 15]]
    with torch.no_grad():
        want = models.sequence_logps(sft, prompts, responses, pad_id=0)
        got = models.sequence_logps(lora.Reference(policy), prompts, responses, pad_id=0)
        moved = models.sequence_logps(policy, prompts, responses, pad_id=0)
    assert torch.equal(got, want)
    assert not torch.allclose(moved, want)


def test_batched_log_probs_come_back_in_the_rows_order_whatever_the_batching(
    llama: Path,
) -> None:
    from pipeline.modeling.inference import batched_logps

    model = models.load_model(llama).eval()
    g = torch.Generator().manual_seed(0)
    sizes = [(3, 9), (2, 1), (5, 4), (1, 12), (4, 2), (2, 7), (3, 3)]  # mixed lengths
    prompts = [torch.randint(5, 200, (a,), generator=g).tolist() for a, _ in sizes]
    responses = [torch.randint(5, 200, (b,), generator=g).tolist() for _, b in sizes]
    with torch.no_grad():
        one_by_one = [
            float(models.sequence_logps(model, [p], [r], pad_id=0)[0])
            for p, r in zip(prompts, responses, strict=True)
        ]
    for batch in (1, 3, 7):
        got = batched_logps(model, prompts, responses, 0, batch)
        assert got == pytest.approx(one_by_one, rel=1e-5)
    assert batched_logps(model, [], [], 0, 4).shape == (0,)


def test_chat_template_true_without_a_template_is_refused(tmp_path: Path) -> None:
    from pipeline.infra.errors import ConfigError

    tok = models.train_bpe_tokenizer(["a b c d e f"] * 20, 280)
    with pytest.raises(ConfigError, match="model.chat_template"):
        sequences.resolve(tok, True, True, instructions=True)


def test_auto_precision_is_bf16_only_where_the_model_and_cpu_allow(tmp_path: Path) -> None:
    embedded = micro_config(tmp_path)
    assert precisions.of(embedded) == "fp32"  # the committed grids' precision
    smol = micro_config(tmp_path, "model=smollm2")
    assert precisions.of(smol) == ("bf16" if precisions.cpu_has_bf16() else "fp32")


def test_resumed_lora_run_equals_an_uninterrupted_one(
    llama: Path, lora_run: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    args = _model_args(llama, *LORA_CHAT)
    whole, cut = lora_run, tmp_path / "cut"
    killed = run_cli(args, cut, env={"PIPELINE_KILL_AT": "train:step:1"}, check=False)
    assert killed.returncode != 0
    checkpoints = list((cut / "cache").rglob("*.pt"))
    assert checkpoints, "the killed run left no checkpoint"
    # Adapters only in the checkpoint: the frozen base is the SFT model on disk.
    saved = torch.load(checkpoints[0], weights_only=True)["model"]
    assert saved and all("lora_" in k for k in saved)
    assert run_in_process(args, cut).returncode == 0
    a = load_file(_artifact(whole, "train") / "model" / "adapter_model.safetensors")
    b = load_file(_artifact(cut, "train") / "model" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_a = (_artifact(whole, "train") / "train_log.csv").read_text()
    log_b = (_artifact(cut, "train") / "train_log.csv").read_text()
    assert log_a == log_b


def test_sft_that_makes_a_pretrained_model_worse_is_warned_about() -> None:
    from pipeline.stages.sft import worse_warning

    message = worse_warning(3.5, 3.9, 3e-3)
    assert message and "WARNING" in message and "scale.sft.lr=0.003" in message
    assert "3.500 -> 3.900" in message
    assert worse_warning(3.5, 3.4, 3e-3) is None and worse_warning(3.5, 3.5, 3e-3) is None


def test_lora_runs_share_a_prefix_and_keep_weights_false_deletes_adapters(
    llama: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    shared, alone = tmp_path / "shared", tmp_path / "alone"
    base = _model_args(llama)[:-1]  # without n_pairs
    assert run_in_process([*base, "n_pairs=16"], shared).returncode == 0
    longer = run_in_process([*base, "n_pairs=30"], shared)
    assert longer.returncode == 0 and "shorter run's: resumed" in longer.stdout
    assert (
        run_in_process([*base, "n_pairs=30", "scale.train.share_prefix=false"], alone).returncode
        == 0
    )

    def adapter(tmp: Path, steps: int) -> dict:
        for path in (tmp / "cache" / "train").glob("*/train_log.csv"):
            if len(path.read_text().splitlines()) == steps + 1:
                return load_file(path.parent / "model" / "adapter_model.safetensors")
        raise AssertionError(f"no run of {steps} steps")

    a, b = adapter(shared, 2), adapter(alone, 2)  # 30 pairs, batch 16: 2 steps
    assert all(torch.equal(a[k], b[k]) for k in a)

    gone = tmp_path / "gone"
    assert run_in_process([*base, "n_pairs=30", "keep_weights=false"], gone).returncode == 0
    assert not list((gone / "cache" / "train").glob("*/model/*.safetensors"))
    again = run_in_process(
        [*base, "n_pairs=30", "keep_weights=false", "scale.eval.seed=99", "fresh_table=true"], gone
    )
    assert again.returncode == 0 and "weights were deleted; training again" in again.stdout


def test_frozen_bf16_weights_train_exactly_as_autocast_casts_them(llama: Path) -> None:
    # Under bf16 autocast a float32 weight is cast to bfloat16 at every product; storing
    # the frozen base weights in bfloat16 once must change no value and no gradient.
    if not precisions.cpu_has_bf16():
        pytest.skip("this CPU has no bf16")
    prompts, responses = [[5, 6, 7], [8, 9], [10]], [[10, 11, 12, 13], [14, 15], [16, 17, 18]]

    def step(cast: bool) -> tuple[torch.Tensor, dict]:
        policy = lora.attach(models.load_model(llama), lora.spec({"r": 4, "alpha": 8}), seed=0)
        with torch.no_grad():  # adapters off zero, so their gradients reach every matrix
            for name, p in policy.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        if cast:
            policy = lora.frozen_in_bf16(policy)
        with precisions.autocast("bf16", torch.device("cpu")):
            lp = models.sequence_logps(policy, prompts, responses, pad_id=0)
        lp.sum().backward()
        grads = {n: p.grad for n, p in policy.named_parameters() if p.requires_grad}
        return lp.detach(), grads

    (plain, plain_grads), (cast, cast_grads) = step(False), step(True)
    assert torch.equal(plain, cast)
    assert plain_grads.keys() == cast_grads.keys() and plain_grads
    for name, g in plain_grads.items():
        assert torch.equal(g, cast_grads[name]), name


def test_a_training_policy_stores_frozen_weights_in_bf16_only_in_one_bf16_process(
    llama: Path,
) -> None:
    def dtypes(precision: str, world: int) -> tuple[set, set]:
        policy = lora.for_training(
            models.load_model(llama), lora.spec({"r": 4, "alpha": 8}), 0, precision, world
        )
        frozen = {p.dtype for n, p in policy.named_parameters() if "base_layer" in n}
        trained = {p.dtype for p in policy.parameters() if p.requires_grad}
        return frozen, trained

    assert dtypes("bf16", 1) == ({torch.bfloat16}, {torch.float32})
    assert dtypes("fp32", 1) == ({torch.float32}, {torch.float32})
    assert dtypes("bf16", 2) == ({torch.float32}, {torch.float32})  # FSDP: one dtype


def test_the_attention_kernel_is_recorded_with_the_sft_model_and_keyed(
    llama: Path, tmp_path: Path
) -> None:
    from pipeline.orchestration import graph

    args = _model_args(llama, "model.attention=eager", "precision=fp32")
    done = run_in_process(args, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sft = _artifact(tmp_path, "sft") / "model"
    assert json.loads((sft / "config.json").read_text())["pipeline_attention"] == "eager"
    assert models.load_model(sft).config._attn_implementation == "eager"
    policy = models.load_model(_artifact(tmp_path, "train") / "model")  # the adapter on SFT
    assert lora.core(policy).config._attn_implementation == "eager"
    assert models.load_model(llama).config._attn_implementation == "sdpa"  # nothing recorded
    eager = graph.stage_keys(micro_config(tmp_path, *args))
    sdpa = graph.stage_keys(micro_config(tmp_path, *_model_args(llama, "precision=fp32")))
    assert eager["sft"] != sdpa["sft"] and eager["train"] != sdpa["train"]
    refused = run_in_process(_model_args(llama, "model.attention=flash"), tmp_path / "bad")
    assert refused.returncode == 1 and "model.attention" in refused.stderr
