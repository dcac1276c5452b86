"""The benchmark's sections: ``Bench`` runs each section's pieces (each in a child
process of its own unless ``--inline``) and returns its part of report.json, the setup
notes included; ``ratios``: ours over TRL's faster mode."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from scripts.bench import child

TARGETS = {"embedded": 1.5, "20M": 1.1}


class Bench:
    def __init__(
        self, plan: dict, threads: int, isolate: bool, python: str, profile_dir: Path | None
    ) -> None:
        self.plan, self.threads, self.isolate, self.python = plan, threads, isolate, python
        self.profile_dir = profile_dir
        self.memory: list[dict] = []  # (stage, piece, peak) of every piece run
        self.loads: list[tuple[str, float, float]] = []  # 1-minute load average around each

    def piece(self, name: str, label: str, stage: str | None = None, **kwargs) -> dict:
        """Run one piece (in a child process unless --inline); never raises: a failed
        piece is an ``error`` entry in the report."""
        start = time.perf_counter()
        try:
            if self.isolate:
                out = child.run_isolated(name, kwargs, self.threads, self.python)
            else:
                out = child.run_piece(name, kwargs, self.threads)
        except Exception as e:  # noqa: BLE001 - reported, and the rest still runs
            out = {"error": f"{type(e).__name__}: {e}"}
        print(f"[bench] {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        if "load_before" in out:
            self.loads.append((label, out["load_before"], out["load_after"]))
        self.memory.append(
            {"stage": stage or "–", "piece": label, "peak_rss_mb": out.get("peak_rss_mb"),
             "process_seconds": out.get("process_seconds")}
        )  # fmt: skip
        return out

    def common(self, size: str) -> dict:
        return {
            "spec": asdict(self.plan["sizes"][size]),
            "data": asdict(self.plan["data"]),
            "scale": self.plan["scale"],
        }

    # ---- sections ------------------------------------------------------------------

    def trl(self) -> dict:
        from scripts.bench.trl_side import trl_version

        plan, version = self.plan, trl_version()
        data = plan["data"]
        out: dict = {
            "trl_version": version,
            "setup": (
                "Same random-weight GPT-2 (built from `GPT2Config`, seed 0), the same synthetic "
                f"pairs in the same order ({data.n_prompts} prompts of BOS + {data.prompt_tokens} "
                f"tokens, {data.n_samples} responses each of up to {data.max_new_tokens} tokens, "
                f"{data.p_eos:.0%} ending early with EOS; pairs as the pairs stage makes them), "
                f"the run settings of `scale={plan['scale']}` for both sides (batch, AdamW and its "
                "lr, warmup, clipping), fp32 on the CPU. Ours: `pipeline.stages.train.train_pairs`, "
                "the pipeline's loop as it runs (including its per-step logging to a sink), with "
                "the reference log-probs from `pipeline.stages.reference.batched_logps` over the "
                "responses the pairs use, timed apart ('ref pass'). TRL "
                f"{version or '(not installed here)'}: `DPOTrainer` with `loss_type=sigmoid`, the "
                "same beta, batch, lr, weight decay (0.01, torch AdamW's default that ours gets), "
                "`constant_with_warmup` schedule, `max_grad_norm`, `max_length`, no gradient "
                "accumulation, `gradient_checkpointing=False` (TRL's default is on), `bf16=False`, "
                "`use_cpu`, dropout off, `train_sampling_strategy=sequential`, logging, saving, "
                "evaluation, reporting and progress bars off, its default optimizer "
                "(`adamw_torch_fused`); with `precompute_ref_log_probs` on (its pass timed "
                "apart, batch = our reference batch) and off (a reference model forward every step). "
                "All three run in one process per model size, interleaved: after a warm-up run of "
                "each, every round times one run of each side, the order rotating by round. "
                "Speed options considered: `padding_free` is disabled in this TRL release (it warns "
                "and pads), Liger kernels need Triton (GPU), `torch_compile` is left off on both "
                "sides. TRL runs its own fused chunked log-prob head (no full-vocabulary logits); "
                "the only change to `DPOTrainer` is skipping its text tokenisation, since the "
                "pairs are token ids already. Each timed run starts from the same weights in a "
                "fresh trainer/optimizer; construction is not timed, but each side's whole call "
                "is (`train_pairs`; TRL's `train()` with its start-up and its final "
                "`gc.collect`), so fixed costs weigh more in these short runs than in a "
                "sweep's 150-300 steps."
            ),
            "equality_note": (
                "The loss at each of the first steps from the same initial weights on the same "
                "batches. The reference is a second random model, so that the first step's loss "
                "depends on every log-prob (with the policy as its own reference it would be log 2 "
                "whatever they were); later steps also compare gradients, clipping, AdamW and the "
                "schedule."
            ),
            "equality": {},
            "sizes": {},
        }
        for size in plan["compare"]:
            common = self.common(size)
            if version is not None:
                out["equality"][size] = self.piece(
                    "loss_equality", f"loss equality, {size}", "train (both)",
                    steps=plan["equality_steps"][size], **common,
                )  # fmt: skip
            entry: dict = {"target": TARGETS[size]}
            sides = ["ours", "trl", "trl_precompute"] if version is not None else ["ours"]
            r = self.piece(
                "throughput", f"throughput ({', '.join(sides)}), {size}",
                "train" if sides == ["ours"] else "train (ours and TRL, one process)",
                sides=sides, steps=plan["steps"][size], warmup_steps=plan["warmup_steps"][size],
                repeats=plan["repeats"], **common,
            )  # fmt: skip
            if "error" in r:
                entry["error"] = r["error"]
            else:
                entry.update({k: v for k, v in r.items() if k != "sides"}, **r["sides"])
            if "error" not in entry and version is not None:
                entry.update(ratios(entry))
            out["sizes"][size] = entry
        if self.profile_dir is not None:
            out["profiles"] = [
                self.piece(
                    "profile",
                    f"profile {side}, {size}",
                    "profile",
                    side=side,
                    steps=plan["profile_steps"][size],
                    **self.common(size),
                    path=str(self.profile_dir / f"profile-{side}-{size}.txt"),
                )  # fmt: skip
                for size in plan["compare"]
                for side in ("ours", "trl_precompute")
                if version is not None
            ]
        out["ratio_note"] = (
            "Steady: pairs per second from the end of the first step to the end of the last "
            "(our sink's log and TRL's `on_step_end`, both after the optimizer update), so "
            "neither side's start-up or end is in it; the targets apply to it, against TRL's "
            "faster mode. Whole call: the pairs over the seconds of the whole `train_pairs` / "
            "`train()` call, reference log-probs given to both (ours from the cached reference "
            "stage). With the ref pass: each "
            "side's reference pass added: ours over the distinct responses the pairs use (the "
            "pipeline computes it once per sample set and shares it across every run of a seed, "
            "so a real sweep pays far less per run), TRL's precompute over every pair's chosen "
            "and rejected sequence."
            if version is not None
            else "TRL is not installed in this environment (`make bench` installs it into "
            ".venv-bench): only our figures were measured."
        )
        return out

    def sweep(self, ledger: str | None) -> dict:
        from scripts.bench.sweep import work_per_sweep

        start = time.perf_counter()
        try:
            return work_per_sweep("sentiment", ledger)
        except Exception as e:  # noqa: BLE001
            return {"error": f"{type(e).__name__}: {e}"}
        finally:
            print(f"[bench] work per sweep: {time.perf_counter() - start:.1f} s", file=sys.stderr)

    def sampling(self) -> dict:
        plan, common = self.plan, self.common("embedded")
        batched = self.piece(
            "sample_batched", "sampling, batched", "sample", repeats=plan["repeats"], **common
        )
        sequential = self.piece(
            "sample_sequential", "sampling, one per call", "sample (unbatched)",
            n_rows=plan["sequential_rows"], repeats=plan["repeats"], **common,
        )  # fmt: skip
        data = plan["data"]
        return {
            "setup": (
                f"The embedded-size model (random weights, an EOS logit offset so that about "
                f"{data.p_eos:.0%} of responses end early, as the embedded SFT model's do), "
                f"{data.n_prompts} prompts × {data.n_samples} samples, up to {data.max_new_tokens} "
                f"new tokens, the sampling settings of `scale={plan['scale']}`. Batched: the "
                "pipeline's `models.sample` over the whole set (prompts left-padded, `generate` "
                "stopping once every row of a batch has ended). One per call: `model.generate` on "
                f"one response at a time, for the first {plan['sequential_rows']} rows. Real tokens "
                "are response tokens up to and including EOS; padded positions are those a batch "
                "runs through beyond them (left padding of prompts, and rows that ended before the "
                "batch's longest)."
            ),
            "batched": batched,
            "sequential": sequential,
        }

    def runs(self) -> dict:
        plan, common = self.plan, self.common("embedded")
        points = []
        for n in plan["run_pairs"]:
            r = self.piece(
                "run_seconds", f"training run, {n} pairs", "train",
                n_pairs=n, repeats=plan["repeats"], **common,
            )  # fmt: skip
            if "error" in r:
                return {"error": r["error"]}
            points.append(r)
        x = np.array([p["pairs"] for p in points], float)
        y = np.array([p["seconds_median"] for p in points], float)
        slope, intercept = np.polyfit(x, y, 1)
        pred = slope * x + intercept
        ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
        return {
            "setup": (
                "One whole training run through `train_pairs` on the embedded-size model (random "
                f"weights, synthetic pairs, the `scale={plan['scale']}` settings, one epoch), the "
                "reference log-probs given; the pipeline's reference pass, checkpointing and model "
                "saving are not included."
            ),
            "points": points,
            "fit": {
                "seconds_per_1000_pairs": float(slope) * 1000,
                "intercept": float(intercept),
                "r2": 1 - ss_res / ss_tot if ss_tot > 0 else 1.0,
                "max_relative_residual": float(np.max(np.abs(y - pred) / y)),
            },
        }

    def optimizer(self) -> dict:
        spec = self.common("20M")["spec"]
        out = self.piece("optimizer_update", "optimizer update, eager and compiled", "train",
                         spec=spec, steps=self.plan["optimizer_steps"])  # fmt: skip
        return {
            "setup": (
                f"The update alone on the parameters of the {spec['name']} model "
                f"({spec['n_layer']} layers × {spec['n_embd']}, vocabulary {spec['vocab_size']}; "
                "random weights and gradients, fp32, CPU): `optim.make_optimizer` as training "
                "builds it, stepped eagerly and through `optim.compiled_step` "
                "(`scale.train.compile=true`), under a warm-up schedule, "
                f"{self.plan['optimizer_steps']} updates each; the median excludes the first "
                "(which compiles). RMSprop is the paper-scale optimizer (torch has no fused "
                "one); AdamW, the embedded default, is fused already and is not compiled."
            ),
            **out,
        }

    def memory_section(self) -> dict:
        if not self.isolate:
            return {"isolated": False}
        plan, common = self.plan, self.common("embedded")
        self.piece("baseline", "imports only (torch, transformers, pipeline)", "–")
        self.piece("sft_steps", f"SFT loop, {plan['sft_steps']} steps", "sft",
                   spec=common["spec"], scale=common["scale"], steps=plan["sft_steps"])  # fmt: skip
        self.piece("reference_pass", "reference pass over the sample set", "reference", **common)
        eval_data = {**common["data"], "n_prompts": plan["eval_prompts"]}
        self.piece("evaluate_kl", "evaluation KL pass", "evaluate", **{**common, "data": eval_data})
        return {
            "isolated": True,
            "setup": (
                "Every measured piece ran in a child process of its own; its peak resident set "
                "(`ru_maxrss` from `os.wait4` on that child) includes the interpreter and its "
                "imports (the first row: about what any piece starts from). Stage pieces use the "
                "embedded-size model and synthetic data: SFT = `sft.train_lm` for a few steps at the "
                "scale's batch and length; sample = `models.sample` over the sample set; reference "
                "= `reference.batched_logps` over every response; train = `train_pairs`; evaluate = "
                "`evaluate.kl_to_reference` (its sampling is like the sample row)."
            ),
            "rows": self.memory,
            "note": (
                "A piece's peak is its process's, warm-up and repeats included; it is not the "
                "pipeline's stage process (which also loads the cache's files, and runs each "
                "stage in the same process as the ones before it). The data, prompts, classifier, "
                "score and pairs stages hold no model and are not measured."
            ),
        }

    def gpu(self, gpu_json: Path) -> dict:
        import torch

        if torch.cuda.is_available():
            here = (
                f"A GPU is available here ({torch.cuda.get_device_name(0)}); the GPU figures come "
                "from the separate GPU script (`scripts/gpu_check.py`, which writes gpu.json), not "
                "from this CPU benchmark."
            )
        else:
            here = "No GPU was available here: every figure above is from the CPU."
        out: dict = {"cuda_available": bool(torch.cuda.is_available()), "here": here}
        if gpu_json.is_file():
            try:
                data = json.loads(gpu_json.read_text())
            except (OSError, ValueError) as e:
                out["separate_error"] = f"{gpu_json}: {e}"
                return out
            out["separate"] = data
            out["separate_path"] = str(gpu_json)
            out["separate_flat"] = _flatten(data)[:120]
        return out


def ratios(entry: dict) -> dict:
    """Ours over TRL's faster mode: steady state (the target's figure), whole calls, and
    whole calls with each side's reference pass."""

    def best(key: str) -> float | None:
        values = [entry[m][key] for m in ("trl", "trl_precompute") if entry[m][key] is not None]
        return max(values) if values else None

    out = {}
    for name, key in (
        ("ratio_steady", "steady_pairs_per_s"),
        ("ratio_whole_call", "pairs_per_s"),
        ("ratio_with_reference", "pairs_per_s_with_reference"),
    ):
        theirs, ours = best(key), entry["ours"][key]
        out[name] = ours / theirs if ours is not None and theirs else None
    out["ratio"] = (
        out["ratio_steady"] if out["ratio_steady"] is not None else out["ratio_whole_call"]
    )
    out["target_met"] = out["ratio"] >= entry["target"]
    return out


def _flatten(obj, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) for every number or short string in a JSON document."""
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in _flatten(v, f"{prefix}{k}.")]
    if isinstance(obj, list):
        return [kv for i, v in enumerate(obj) for kv in _flatten(v, f"{prefix}{i}.")]
    if isinstance(obj, bool) or obj is None or (isinstance(obj, str) and len(obj) > 80):
        return [(prefix[:-1], obj)] if isinstance(obj, bool) else []
    if isinstance(obj, float) and not math.isfinite(obj):
        return [(prefix[:-1], str(obj))]
    return [(prefix[:-1], obj)]
