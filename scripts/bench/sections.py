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

from scripts.bench import child, notes

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
        out: dict = {
            "trl_version": version,
            "setup": notes.trl_setup(plan, version),
            "equality_note": notes.EQUALITY_NOTE,
            "equality": {},
            "sizes": {},
        }
        for size in plan["compare"]:
            if version is not None:
                out["equality"][size] = self.piece(
                    "loss_equality", f"loss equality, {size}", "train (both)",
                    steps=plan["equality_steps"][size], **self.common(size),
                )  # fmt: skip
            out["sizes"][size] = self._throughput(size, version)
        if self.profile_dir is not None:
            out["profiles"] = self._profiles(version)
        out["ratio_note"] = notes.ratio_note(version)
        return out

    def _throughput(self, size: str, version: str | None) -> dict:
        """Pairs/s of ours (and TRL's two modes when installed) at one model size."""
        plan = self.plan
        entry: dict = {"target": TARGETS[size]}
        sides = ["ours", "trl", "trl_precompute"] if version is not None else ["ours"]
        r = self.piece(
            "throughput", f"throughput ({', '.join(sides)}), {size}",
            "train" if sides == ["ours"] else "train (ours and TRL, one process)",
            sides=sides, steps=plan["steps"][size], warmup_steps=plan["warmup_steps"][size],
            repeats=plan["repeats"], **self.common(size),
        )  # fmt: skip
        if "error" in r:
            entry["error"] = r["error"]
        else:
            entry.update({k: v for k, v in r.items() if k != "sides"}, **r["sides"])
        if "error" not in entry and version is not None:
            entry.update(ratios(entry))
        return entry

    def _profiles(self, version: str | None) -> list[dict]:
        plan = self.plan
        return [
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

    def smollm2(self, cache_dir: str) -> dict:
        """SmolLM2-135M-Instruct + LoRA, bf16: ours vs TRL, reference pass, sampling."""
        from scripts.bench import smollm2

        return smollm2.section(self, cache_dir)

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
        return {
            "setup": notes.sampling_setup(plan),
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
            "setup": notes.runs_setup(plan),
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
            "setup": notes.optimizer_setup(spec, self.plan["optimizer_steps"]),
            **out,
        }

    def data_rows(self) -> dict:
        """Reading published pair rows (UltraFeedback-binarized layout) and building pairs."""
        plan = self.plan["data_rows"]
        baseline = self.piece("baseline", "imports only (torch, transformers, pipeline)", "–")
        out = self.piece("read_pairs", f"reading {plan['rows']:,} pair rows", "data",
                         n_rows=plan["rows"])  # fmt: skip
        return {"setup": notes.DATA_ROWS_SETUP, "targets": plan["targets"],
                "baseline_rss_mb": baseline.get("peak_rss_mb"), **out}  # fmt: skip

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
            "setup": notes.MEMORY_SETUP,
            "rows": self.memory,
            "note": notes.MEMORY_NOTE,
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
