"""The GPU check of the performance issue, in one invocation (< 10 minutes on an H100/H200).

    python scripts/gpu_check.py --out results/bench            # on a CUDA machine
    python scripts/gpu_check.py --out /tmp/gpu --quick --device cpu   # a dry run here

It measures, on the device it runs on, and writes ``<out>/gpu.json`` (``make bench``
puts it into ``results/bench/report.md`` under the device's name):

1. the card's bf16 matrix-product peak (8192^3, median of 10 after warm-up): the
   denominator of model-FLOPs utilisation (MFU);
2. the DPO step at GPT-2 Large's shape (36 layers x 1280, vocabulary 50,257; 32 pairs,
   prompts of 8 and responses of 100 tokens; RMSprop) through the pipeline's own
   loop, ``pipeline.stages.train.train_pairs``, in fp32, tf32, bf16 and bf16 with
   ``torch.compile`` (``scale.train.compile``: the transformer and the optimizer update):
   pairs/s, TFLOP/s, MFU, peak memory. Model FLOPs per step count
   what the objective needs: 6 x body parameters x tokens, the attention products,
   and the output layer at the 100 response positions of each sequence;
3. sampling with ``pipeline.modeling.models.sample`` (bf16 and fp32): real tokens/s and the
   share of padded positions;
4. one checkpoint save of the whole loop state (model and optimizer);
5. the paper-scale sentiment pipeline end to end (``python -m pipeline scale=paper``)
   with random-weight paper-size models on small sizes (a GPT-2 Large-shaped policy,
   a DistilBERT-shaped classifier, the local review fixture as data): SFT, sampling,
   scoring, pairs, reference, ODPO training and evaluation all run on the GPU.

Random weights: no hub is reachable from the GPU machines, and speed does not depend
on the values. Each part is guarded: a failure is recorded in the JSON and the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir
from transformers import GPT2Config, GPT2LMHeadModel

from pipeline.modeling import models
from pipeline.modeling.checkpoint import loop_state
from pipeline.modeling.optim import make_optimizer
from pipeline.stages import train

PAPER = {"n_layer": 36, "n_embd": 1280, "n_head": 20, "vocab": 50257}
QUICK = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab": 2048}
PAIRS, PROMPT, RESPONSE = 32, 8, 100


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_info(device: str) -> dict:
    info = {
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info |= {
            "name": props.name,
            "memory_gb": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
        }
    else:
        info["name"] = platform.processor() or "cpu"
    import transformers

    info["transformers"] = transformers.__version__
    return info


def matmul_peak(device: str, n: int) -> float:
    """Measured bf16 TFLOP/s of an n^3 product (median of 10 after 3 warm-ups)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    times = []
    for i in range(13):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        if i >= 3:
            times.append(time.perf_counter() - t)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e12


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


def end_to_end(shape, device, work: Path, quick: bool) -> dict:
    """``python -m pipeline scale=paper`` on random-weight paper-size models."""
    import csv

    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    with open(ROOT / "tests" / "fixtures" / "sentiment_reviews.csv") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    tok = models.train_bpe_tokenizer(texts, 400)
    # Pad the tokenizer to GPT-2's vocabulary so the policy has the paper's output layer
    # and every id it samples decodes.
    tok.add_tokens([f"<r{i}>" for i in range(shape["vocab"] - len(tok))])
    lm = work / "gpt2-large-random"
    model(shape | {"vocab": len(tok)}, "cpu").save_pretrained(lm)
    tok.save_pretrained(lm)
    clf_tok = models.train_bpe_tokenizer(texts, 300)
    clf_tok.model_max_length = 512  # as a hub classifier's tokenizer says (truncation needs it)
    clf = DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=len(clf_tok), dim=768, hidden_dim=3072, n_layers=6, n_heads=12,
            id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
            pad_token_id=clf_tok.pad_token_id,
        )
    )  # fmt: skip
    clf.save_pretrained(work / "classifier")
    clf_tok.save_pretrained(work / "classifier")
    args = [
        sys.executable, "-m", "pipeline", "scale=paper", f"device={device}", "offline=true",
        "wandb=disabled", "loss=odpo", f"scale.model.pretrained={lm}",
        "data.source=local", "data.heldout_fraction=0.5", f"data.path={ROOT / 'tests' / 'fixtures' / 'sentiment_reviews.csv'}",
        f"scorer.model={work / 'classifier'}", "scorer.label=POSITIVE",
        "scale.sft.steps=10", "scale.sample.n_prompts=48", "n_pairs=320",
        "scale.eval.n_prompts=24", "scale.train.warmup_steps=2",
        f"cache_dir={work / 'cache'}", f"results_dir={work / 'results'}",
    ]  # fmt: skip
    if quick:
        args.append("precision=fp32")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1")
    t = time.perf_counter()
    done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    out = {"returncode": done.returncode, "seconds": round(seconds, 1),
           "log_tail": (done.stdout + done.stderr)[-2500:]}  # fmt: skip
    table = work / "results" / "runs.csv"
    if table.is_file():
        import pandas as pd

        frame = pd.read_csv(table)
        keep = [c for c in ("loss", "beta", "reward", "kl", "kl_exact", "train_seconds")
                if c in frame.columns]  # fmt: skip
        out["runs"] = frame[keep].to_dict("records")
    return out


OUT: list[Path] = []  # where gpu.json goes: rewritten after every part, so a timeout loses none


def guarded(name: str, results: dict, fn, *args) -> None:
    t = time.perf_counter()
    try:
        results[name] = fn(*args)
    except Exception as e:  # one failed part must not lose the others' numbers
        results[name] = {
            "error": f"{type(e).__name__}: {e}",
            "trace": traceback.format_exc()[-2000:],
        }
    print(f"[gpu_check] {name} ({time.perf_counter() - t:.0f}s): "
          f"{json.dumps(results[name], default=str)[:600]}", flush=True)  # fmt: skip
    for folder in OUT:
        (folder / "gpu.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny model, for a dry run on a CPU")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_check"))
    parser.add_argument("--skip", nargs="*", default=[], help="parts to skip")
    a = parser.parse_args()
    shape = QUICK if a.quick else PAPER
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "shape": shape}
    a.out.mkdir(parents=True, exist_ok=True)
    OUT.append(a.out)
    guarded("device", results, device_info, a.device)
    guarded("matmul_peak_tflops", results, matmul_peak, a.device, 1024 if a.quick else 8192)
    peak = (
        results["matmul_peak_tflops"] if isinstance(results["matmul_peak_tflops"], float) else None
    )
    variants = [("fp32", False), ("bf16", False), ("bf16", True)]
    if a.device.startswith("cuda"):
        variants.insert(1, ("tf32", False))
    for prec, compiled in variants:
        name = f"dpo_step_{prec}{'_compile' if compiled else ''}"
        if name not in a.skip:
            guarded(name, results, step_bench, shape, a.device, prec, compiled, peak,
                    *((2, 4) if a.quick else (5, 20)))  # fmt: skip
    for prec in ("bf16", "fp32"):
        if f"sampling_{prec}" not in a.skip:
            guarded(f"sampling_{prec}", results, sampling_bench, shape, a.device, prec,
                    64 if a.quick else 512)  # fmt: skip
    for opt in ("rmsprop", "adamw"):
        if f"profile_{opt}" not in a.skip:
            guarded(f"profile_{opt}", results, profile_step, shape, a.device, opt)
    if "checkpoint" not in a.skip:
        guarded("checkpoint", results, checkpoint_bench, shape, a.device, a.work / "ckpt")
    if "end_to_end" not in a.skip:
        a.work.mkdir(parents=True, exist_ok=True)
        guarded("end_to_end", results, end_to_end, shape, a.device, a.work, a.quick)
    print(f"[gpu_check] wrote {a.out / 'gpu.json'}")


if __name__ == "__main__":
    main()
