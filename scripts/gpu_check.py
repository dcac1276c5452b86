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
Parts 2 to 4 are in ``gpu_steps.py``.
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

from pipeline.modeling import models
from scripts.gpu_steps import (
    checkpoint_bench,
    model,
    profile_step,
    sampling_bench,
    step_bench,
    sync,
)

PAPER = {"n_layer": 36, "n_embd": 1280, "n_head": 20, "vocab": 50257}
QUICK = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab": 2048}


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
