"""The speed work of the performance issue keeps every number it touches:

- the chunked float32 log-prob of the chosen token (values and gradients, also from
  bfloat16 logits) and the zero-padded output layer used on CUDA;
- ``sequence_logps`` (head on response positions only) against the full log-softmax;
- gradient accumulation gives the same training curve as one batch;
- length-bucketed sampling returns every response in its prompt's place, and with
  prompts of one length it draws exactly what unbucketed sampling draws;
- the precision setting: resolution per device, refusals, and no key change for fp32;
- checkpoints by wall clock.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pipeline.infra.errors import ConfigError
from pipeline.modeling import models
from pipeline.modeling import precision as precisions
from pipeline.modeling.checkpoint import Checkpointer
from pipeline.stages import train


def test_chunked_token_logprob_matches_log_softmax_in_value_and_gradient() -> None:
    torch.manual_seed(0)
    logits = (torch.randn(40, 300) * 3).requires_grad_()
    targets = torch.randint(300, (40,))
    weights = torch.randn(40)
    ours = models._TokenLogprob.apply(logits, targets)
    (ours * weights).sum().backward()
    ours_grad, logits.grad = logits.grad.clone(), None
    ref = torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    (ref * weights).sum().backward()
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(ours_grad, logits.grad, atol=1e-6)
    # From bf16 logits: float32 output, bf16 gradient, equal to the exact values of the
    # rounded logits (the reduction itself loses nothing).
    half = logits.detach().bfloat16().requires_grad_()
    out = models.token_logprobs(half, targets)
    (out * weights).sum().backward()
    exact = torch.log_softmax(half.detach().double(), -1).gather(-1, targets[:, None]).squeeze(-1)
    assert out.dtype == torch.float32 and half.grad.dtype == torch.bfloat16
    assert torch.allclose(out.double(), exact, atol=1e-5)


def test_chunks_cover_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny chunk budget (3 rows per chunk) gives the same answer as one chunk."""
    torch.manual_seed(1)
    logits = torch.randn(10, 7, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(7, (10,))
    whole = models._TokenLogprob.apply(logits, targets)
    whole.sum().backward()
    grad, logits.grad = logits.grad.clone(), None
    monkeypatch.setattr(models, "_chunk_rows", lambda x, budget=0: 3)
    chunked = models._TokenLogprob.apply(logits, targets)
    chunked.sum().backward()
    assert torch.equal(whole, chunked) and torch.equal(grad, logits.grad)


def test_padded_output_layer_gives_the_same_values_and_gradients() -> None:
    torch.manual_seed(2)
    head = torch.nn.Linear(16, 101)
    x = torch.randn(9, 16, requires_grad=True)
    padded = models.padded_linear(x, head.weight, head.bias, 64)
    assert padded.shape == (9, 101)
    padded.square().sum().backward()
    grads = (x.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone())
    x.grad = head.weight.grad = head.bias.grad = None
    plain = head(x)
    plain.square().sum().backward()
    assert torch.allclose(padded, plain, atol=1e-6)
    for a, b in zip(grads, (x.grad, head.weight.grad, head.bias.grad), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def _tiny_lm(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.small_gpt2(vocab_size=23, n_layer=1, n_embd=16, n_head=2, n_positions=32)


def test_sequence_logps_equals_the_full_log_softmax_sum() -> None:
    model = _tiny_lm().eval()
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(1, 23, (int(n),), generator=g).tolist() for n in (2, 5, 3, 4)]
    responses = [torch.randint(1, 23, (int(n),), generator=g).tolist() for n in (6, 1, 4, 0)]
    with torch.no_grad():
        ours = models.sequence_logps(model, prompts, responses, pad_id=0)
        lp, targets, mask = models.response_token_logprobs(model, prompts, responses, 0)
        full = (lp.gather(-1, targets[..., None]).squeeze(-1) * mask).sum(-1)
    assert torch.allclose(ours, full, atol=1e-5)
    assert ours[3] == 0  # an empty response has log-prob 0


def _micro_training_inputs(n_pairs: int) -> tuple[dict, dict, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(1, 23, (3,), generator=g).tolist() for _ in range(n_pairs)]
    lengths = torch.randint(1, 6, (n_pairs, 2), generator=g)
    responses = [
        [torch.randint(1, 23, (int(k),), generator=g).tolist() for k in row] for row in lengths
    ]
    s = {"prompts": prompts, "responses": responses}
    p = {
        "prompt": np.arange(n_pairs),
        "chosen": np.zeros(n_pairs, dtype=np.int64),
        "rejected": np.ones(n_pairs, dtype=np.int64),
        "score_chosen": np.full(n_pairs, 1.5),
        "score_rejected": np.full(n_pairs, 0.5),
    }
    return s, p, -torch.rand(n_pairs, 2, generator=g) * 10


class _Curve:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def log(self, metrics: dict, step: int) -> None:
        self.rows.append(metrics)


def _train_cfg(**train: object):
    base = {
        "optimizer": "adamw",
        "lr": 1e-3,
        "batch_size": 6,
        "epochs": 1,
        "warmup_steps": 0,
        "max_grad_norm": 1.0,
        "log_every": 1,
    }
    return OmegaConf.create(
        {
            "device": "cpu",
            "precision": "auto",
            "seed": 0,
            "loss": {"name": "odpo", "beta": 0.5, "alpha": 1.0},
            "offset": {"name": "log_diff"},
            "scale": {"train": base | train},
        }
    )


@pytest.mark.parametrize("accum", [2, 3])
def test_gradient_accumulation_gives_the_one_batch_training_curve(accum: int) -> None:
    s, p, ref = _micro_training_inputs(20)  # batches of 6, 6, 6, 2: uneven micro-batches
    curves = []
    for steps in (1, accum):
        cfg = _train_cfg(grad_accum=steps)
        policy = models.disable_dropout(_tiny_lm()).train()
        curve = _Curve()
        offsets = train.pair_offsets(cfg, p)
        n = train.train_pairs(cfg, policy, s, p, ref, offsets, 0, torch.Generator(), [curve])
        assert n == 4
        curves.append(curve.rows)
    for one, acc in zip(*curves, strict=True):
        for name in ("train/loss", "train/grad_norm", "train/margins", "train/offset"):
            assert one[name] == pytest.approx(acc[name], rel=1e-5, abs=1e-6), name


def test_non_finite_values_are_reported_with_their_step() -> None:
    from pipeline.infra.errors import PipelineError

    s, p, ref = _micro_training_inputs(18)  # 3 steps of 6 pairs
    ref[8, 0] = float("nan")  # pair 8 is in the second batch (step 1)
    cfg = _train_cfg(log_every=10)  # logs step 0 only: found at the end, not when it happened
    policy = models.disable_dropout(_tiny_lm()).train()
    expected = r"at step 1, epoch 0, batch of pairs 6\.\.11 \(found at step 2"
    with pytest.raises(PipelineError, match=expected):
        train.train_pairs(cfg, policy, s, p, ref, None, 0, torch.Generator(), [])


def test_bucketed_sampling_keeps_each_response_with_its_prompt() -> None:
    model = _tiny_lm(5).eval()
    prompts = [[1, 2], [3, 4, 5, 6, 7], [8], [9, 10, 11]]
    common = dict(max_new_tokens=4, eos_id=0, pad_id=0, batch_size=3, generator_seed=7)
    stats: dict = {}
    bucketed = models.sample(model, prompts, 2, bucket=True, stats=stats, **common)
    assert [len(rs) for rs in bucketed] == [2, 2, 2, 2]
    assert stats["real_tokens"] == sum(len(r) for rs in bucketed for r in rs)
    assert 0 <= stats["pad_share"] < 1 and stats["positions"] >= stats["real_tokens"]
    # Greedy decoding does not depend on the batch: each prompt gets the same response
    # bucketed or not, so a response can only match if it was put back in its place.
    greedy = dict(common, temperature=0.0)
    assert models.sample(model, prompts, 1, bucket=True, **greedy) == models.sample(
        model, prompts, 1, bucket=False, **greedy
    )
    # Prompts of one length: bucketing changes nothing, draws included.
    same = [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert models.sample(model, same, 2, bucket=True, **common) == models.sample(
        model, same, 2, bucket=False, **common
    )


def test_precision_resolves_per_device_and_refuses_what_cannot_run() -> None:
    assert precisions.resolve("auto", "cpu") == "fp32"
    assert precisions.resolve(None, "cuda") == "bf16"
    assert precisions.resolve("auto", "cuda:1") == "bf16"
    assert precisions.resolve("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="tf32"):
        precisions.resolve("tf32", "cpu")
    with pytest.raises(ConfigError, match="choose one of"):
        precisions.resolve("fp16", "cuda")
    cfg = OmegaConf.create({"device": "cpu", "precision": "auto"})
    assert precisions.key(cfg) == {}  # fp32 adds nothing: keys from before stay valid
    cfg.precision = "bf16"
    assert precisions.key(cfg) == {"precision": "bf16"}
    assert precisions.inference_dtype("bf16", "cuda") == "bfloat16"
    assert precisions.inference_dtype("bf16", "cpu") == "float32"
    assert precisions.inference_dtype("fp32") == "float32"


def test_checkpoints_by_wall_clock(tmp_path: Path) -> None:
    never = Checkpointer(tmp_path / "a", every=0, stage="train", seconds=3600)
    assert not never.due(0)
    soon = Checkpointer(tmp_path / "b", every=0, stage="train", seconds=0.05)
    time.sleep(0.1)
    assert soon.due(0)
    soon.save({"step": 1}, 0)
    assert not soon.due(1)  # the clock restarts at each save
    assert soon.load() == {"step": 1} and soon.save_seconds > 0


def test_a_longer_run_resumes_from_a_shorter_runs_state_bit_for_bit(tmp_path: Path) -> None:
    """Sizes of one sweep share their first batches (pairs are a prefix of one seeded
    order): the longer run started from the shorter run's saved state ends with exactly
    the weights and logs of the longer run trained from scratch."""
    from pipeline.modeling.checkpoint import PrefixStore

    s, p, ref = _micro_training_inputs(20)
    cfg = _train_cfg()  # batches of 6
    short = {k: v[:14] for k, v in p.items()}  # full batches end at 12: its state is saved

    def trained(pairs: dict, store: PrefixStore | None) -> tuple[dict, list[dict]]:
        policy = models.disable_dropout(_tiny_lm()).train()
        curve = _Curve()
        offsets = train.pair_offsets(cfg, pairs)
        train.train_pairs(cfg, policy, s, pairs, ref, offsets, 0, torch.Generator(), [curve],
                          prefix=store)  # fmt: skip
        return policy.state_dict(), curve.rows

    store = PrefixStore(tmp_path / "prefixes", "family")
    trained(short, store)
    assert sorted(f.name for f in store.directory.iterdir()) == ["family-12.pt"]
    resumed, resumed_rows = trained(p, store)
    fresh, fresh_rows = trained(p, None)
    assert all(torch.equal(resumed[k], fresh[k]) for k in fresh)
    assert resumed_rows == fresh_rows
    # Other pairs (another seed's order): the shared state is not used.
    other = {k: v[::-1].copy() for k, v in p.items()}
    assert store.best(torch.from_numpy(np.stack([other[c].astype(float) for c in
                      ("prompt", "chosen", "rejected", "score_chosen", "score_rejected")], 1)),
                      6) is None  # fmt: skip
