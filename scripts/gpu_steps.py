"""The timed parts of the GPU check (``gpu_check.py`` runs them, each guarded): the DPO
step through ``pipeline.stages.train.train_pairs`` and its kernel profile, sampling with
``pipeline.modeling.models.sample``, and one checkpoint save; also the random-weight
GPT-2 they run on and the model FLOPs of a step."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from transformers import GPT2Config, GPT2LMHeadModel

from pipeline.modeling import models
from pipeline.modeling.checkpoint import loop_state
from pipeline.modeling.optim import make_optimizer
from pipeline.stages import train

ROOT = Path(__file__).resolve().parents[1]
PAIRS, PROMPT, RESPONSE = 32, 8, 100


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model(shape: dict, device: str) -> torch.nn.Module:
    config = GPT2Config(
        vocab_size=shape["vocab"],
        n_positions=1024,
        n_embd=shape["n_embd"],
        n_layer=shape["n_layer"],
        n_head=shape["n_head"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function=models.FUSED_GELU,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: a CPU init of 774M takes ~15 s
        return GPT2LMHeadModel(config)


def step_flops(shape: dict) -> float:
    """Model FLOPs of one DPO step (forward + backward over chosen and rejected)."""
    seqs, length, d, layers = 2 * PAIRS, PROMPT + RESPONSE, shape["n_embd"], shape["n_layer"]
    body = 6 * layers * 12 * d * d * seqs * length
    attention = 12 * layers * length * length * d * seqs
    head = 6 * d * shape["vocab"] * seqs * RESPONSE
    return float(body + attention + head)


def synthetic(n_pairs: int, vocab: int) -> tuple[dict, dict, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(1, vocab, (n_pairs, PROMPT), generator=g).tolist()
    responses = torch.randint(1, vocab, (n_pairs, 2, RESPONSE), generator=g).tolist()
    import numpy as np

    s = {"prompts": prompts, "responses": responses}
    p = {
        "prompt": np.arange(n_pairs),
        "chosen": np.zeros(n_pairs, dtype=np.int64),
        "rejected": np.ones(n_pairs, dtype=np.int64),
        "score_chosen": np.ones(n_pairs),
        "score_rejected": np.zeros(n_pairs),
    }
    return s, p, torch.zeros(n_pairs, 2)


def paper_cfg(overrides: list[str]):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["scale=paper", "loss=dpo", *overrides])


class Clock:
    """A train_pairs sink: the wall clock at each logged (hence synchronised) step."""

    def __init__(self) -> None:
        self.marks: dict[int, float] = {}

    def log(self, metrics: dict, step: int) -> None:
        self.marks[step] = time.perf_counter()


def step_bench(shape, device, precision, compiled, peak, warm: int, timed: int) -> dict:
    torch.cuda.empty_cache() if device.startswith("cuda") else None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    policy = model(shape, device).train()
    cfg = paper_cfg(
        [
            f"device={device}",
            f"precision={precision}",
            f"scale.train.compile={str(compiled).lower()}",
            f"scale.train.log_every={warm}",
            "scale.train.warmup_steps=0",
        ]
    )
    n = PAIRS * (warm + timed + 1)
    s, p, ref = synthetic(n, shape["vocab"])
    clock = Clock()
    began = time.perf_counter()
    train.train_pairs(cfg, policy, s, p, ref, None, 0, torch.Generator(), [clock], None)
    sync(device)
    total = time.perf_counter() - began
    seconds = (clock.marks[warm + timed] - clock.marks[warm]) / timed
    flops = step_flops(shape)
    out = {
        "precision": precision,
        "compile": compiled,
        "pairs_per_s": round(PAIRS / seconds, 1),
        "step_ms": round(seconds * 1000, 1),
        "tflops": round(flops / seconds / 1e12, 1),
        "mfu_vs_bf16_peak": round(flops / seconds / 1e12 / peak, 3) if peak else None,
        "first_steps_s": round(clock.marks[warm] - began, 1),
        "total_s": round(total, 1),
    }
    if device.startswith("cuda"):
        out["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    del policy
    return out


def profile_step(shape, device, optimizer: str) -> dict:
    """Where a bf16 step's time goes: the top kernels of 5 steps (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    policy = model(shape, device).train()
    cfg = paper_cfg([f"device={device}", "precision=bf16", "scale.train.log_every=100",
                     "scale.train.warmup_steps=0", f"scale.train.optimizer={optimizer}"])  # fmt: skip
    s, p, ref = synthetic(PAIRS * 8, shape["vocab"])
    warm = {k: v[: PAIRS * 3] for k, v in p.items()}
    train.train_pairs(cfg, policy, s, warm, ref, None, 0, torch.Generator(), [], None)
    rest = {k: v[PAIRS * 3 :] for k, v in p.items()}
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if device.startswith("cuda") else []
    )
    sync(device)
    t = time.perf_counter()
    with profile(activities=activities) as prof:
        train.train_pairs(cfg, policy, s, rest, ref, None, 0, torch.Generator(), [], None)
        sync(device)
    seconds = (time.perf_counter() - t) / 5
    sort = "cuda_time_total" if device.startswith("cuda") else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=60)
    del policy
    return {"optimizer": optimizer, "step_ms_profiled": round(seconds * 1000, 1), "table": table}


def sampling_bench(shape, device, precision, rows: int) -> dict:
    policy = model(shape, device).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [
        torch.randint(1, shape["vocab"], (int(k),), generator=g).tolist()
        for k in torch.randint(4, 13, (rows,), generator=g)
    ]
    stats: dict = {}
    models.sample(policy, prompts, 1, RESPONSE, 0, 0, batch_size=256, bucket=True,
                  precision=precision, stats=stats)  # fmt: skip
    del policy
    return {
        "precision": precision,
        "rows": rows,
        "tokens_per_s": round(stats["real_tokens"] / stats["seconds"], 0),
        **stats,
    }


def checkpoint_bench(shape, device, folder: Path) -> dict:
    policy = model(shape, device)
    opt = make_optimizer("rmsprop", policy.parameters(), 5e-7)
    policy(torch.ones(1, 8, dtype=torch.long, device=device)).logits.sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    torch.save(loop_state(policy, opt, sched, torch.Generator(), step=1), folder / "state.pt")
    seconds = time.perf_counter() - t
    size = (folder / "state.pt").stat().st_size
    (folder / "state.pt").unlink()
    del policy, opt
    return {"save_s": round(seconds, 2), "size_gb": round(size / 2**30, 2),
            "overhead_at_600s_interval": round(seconds / 600, 4)}  # fmt: skip
