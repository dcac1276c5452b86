"""The benchmark driver: what each bench scale measures, the command line, the sections
run (``sections.py``), the report files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from pipeline import PROJECT_ROOT
from scripts.bench import child, machine, report
from scripts.bench.sections import Bench
from scripts.bench.synthetic import DataSpec, ModelSpec

SECTIONS = ("trl", "sweep", "sampling", "runs", "optimizer", "data", "memory", "gpu")
# Run only when named in --only (a real 135M model: minutes, and its weights in the cache).
OPTIONAL = ("smollm2",)


def _smollm2(data: DataSpec, warmup: int, steps: int, sampling: dict) -> dict:
    """The smollm2 section's plan: SmolLM2-135M-Instruct + LoRA, bf16 (``smollm2.py``)."""
    return {
        "data": data,
        "warmup_steps": warmup,
        "steps": steps,
        "repeats": 1,
        "sampling": {**sampling, "repeats": 1},
        "targets": {"ratio": 1.5, "pairs_per_s": 8.0},  # the issue's: ours vs TRL's best
    }


def plans() -> dict[str, dict]:
    """What each bench scale measures. ``full`` is ``make bench`` (about 15 minutes on
    the project's 2-core CPU); ``micro`` shrinks every piece for the tests."""
    return {
        "full": {
            "name": "full",
            "scale": "embedded",  # the pipeline config whose training settings both sides use
            "sizes": {
                "embedded": ModelSpec("embedded", 1024, 2, 96, 4, 64),
                "20M": ModelSpec("20M", 50257, 6, 384, 6, 64),
            },
            "data": DataSpec(n_prompts=800, n_samples=6, prompt_tokens=4, max_new_tokens=24),
            "steps": {"embedded": 60, "20M": 5},
            "warmup_steps": {"embedded": 5, "20M": 1},
            "equality_steps": {"embedded": 5, "20M": 3},
            "profile_steps": {"embedded": 40, "20M": 3},
            "repeats": 3,
            "run_pairs": [5000, 7500, 10000],
            "sequential_rows": 96,
            "sft_steps": 20,
            "eval_prompts": 256,
            "optimizer_steps": 12,
            # UltraFeedback-binarized has 61,135 training rows.
            "data_rows": {"rows": 60_000, "targets": {"seconds": 30.0, "peak_gb": 2.0}},
            # 8 + 24 = 32-token sequences; 4 responses per prompt, as sentiment_smollm2.
            "smollm2": _smollm2(
                DataSpec(n_prompts=64, n_samples=4, prompt_tokens=7, max_new_tokens=24, p_eos=0.0),
                warmup=3,
                steps=6,
                sampling={"n_prompts": 64, "prompt_tokens": 7, "max_new_tokens": 24},
            ),  # fmt: skip
        },
        "micro": {
            "name": "micro",
            "scale": "micro",
            "sizes": {
                "embedded": ModelSpec("embedded (micro)", 128, 1, 16, 2, 32),
                "20M": ModelSpec("20M (micro)", 512, 1, 32, 2, 32),
            },
            "data": DataSpec(n_prompts=30, n_samples=4, prompt_tokens=3, max_new_tokens=8),
            "steps": {"embedded": 2, "20M": 2},
            "warmup_steps": {"embedded": 1, "20M": 1},
            "equality_steps": {"embedded": 2, "20M": 2},
            "profile_steps": {"embedded": 2, "20M": 2},
            "repeats": 3,
            "run_pairs": [32, 48, 64],
            "sequential_rows": 8,
            "sft_steps": 2,
            "eval_prompts": 16,
            "optimizer_steps": 4,
            "data_rows": {"rows": 300, "targets": {"seconds": 30.0, "peak_gb": 2.0}},
            "smollm2": _smollm2(
                DataSpec(n_prompts=8, n_samples=4, prompt_tokens=3, max_new_tokens=4, p_eos=0.0),
                warmup=1,
                steps=1,
                sampling={"n_prompts": 4, "prompt_tokens": 3, "max_new_tokens": 4},
            ),  # fmt: skip
        },
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    import scripts.bench

    ap = argparse.ArgumentParser(
        prog="python -m scripts.bench",
        description=scripts.bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--scale", choices=("full", "micro"), default="full")
    ap.add_argument("--out", default=str(PROJECT_ROOT / "results" / "bench"))
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: 2; micro: 1)"
    )
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma list of {','.join(SECTIONS + OPTIONAL)} (default: all but "
        f"{','.join(OPTIONAL)})",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the other sections of an existing OUT/report.json (e.g. add --only smollm2 "
        "to a make bench report); the header says which sections a later run measured",
    )
    ap.add_argument(
        "--cache-dir",
        default=str(PROJECT_ROOT / ".cache" / "pipeline"),
        help="pipeline cache holding SmolLM2's weights, built there on first use (smollm2)",
    )
    ap.add_argument(
        "--smollm2-steps",
        default=None,
        metavar="WARMUP,STEPS[,REPEATS]",
        help="smollm2: warm-up and measured steps per call, calls per side (full: 3,6,1)",
    )
    ap.add_argument("--sizes", default="embedded,20M", help="model sizes for the TRL comparison")
    default_ledger = PROJECT_ROOT / ".cache" / "pipeline" / "ledger.jsonl"
    ap.add_argument(
        "--ledger", default=str(default_ledger), help="ledger.jsonl to compare ('' for none)"
    )
    ap.add_argument(
        "--gpu-json",
        default=None,
        help="GPU figures from scripts/gpu_check.py (default OUT/gpu.json)",
    )
    ap.add_argument(
        "--inline", action="store_true", help="run every piece in this process (no memory figures)"
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also profile ours and TRL (pyinstrument) into OUT/profile-*.txt (not timed)",
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter for the child processes")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    plan = plans()[args.scale]
    if args.smollm2_steps:
        plan["smollm2"].update(_steps(args.smollm2_steps, plan["smollm2"]["repeats"]))
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if not sizes or set(sizes) - set(plan["sizes"]):
        raise SystemExit(f"--sizes: choose from {sorted(plan['sizes'])}")
    plan["compare"] = sizes
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS + OPTIONAL)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS + OPTIONAL}")
    threads = args.threads or (1 if args.scale == "micro" else 2)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    child.quiet_env()
    start = time.perf_counter()
    bench = Bench(
        plan, threads, not args.inline, args.python, out_dir.resolve() if args.profile else None
    )
    result = {"machine": machine.machine(threads), "plan": _jsonable(plan), "sections": {}}
    sections = result["sections"]
    if "trl" in only:
        sections["trl"] = bench.trl()
    if "smollm2" in only:
        sections["smollm2"] = bench.smollm2(args.cache_dir)
    if "sweep" in only:
        sections["sweep"] = bench.sweep(args.ledger or None)
    if "sampling" in only:
        sections["sampling"] = bench.sampling()
    if "runs" in only:
        sections["runs"] = bench.runs()
    if "optimizer" in only:
        sections["optimizer"] = bench.optimizer()
    if "data" in only:
        sections["data"] = bench.data_rows()
    if "memory" in only:
        sections["memory"] = bench.memory_section()
    if "gpu" in only:
        sections["gpu"] = bench.gpu(Path(args.gpu_json) if args.gpu_json else out_dir / "gpu.json")
    result["seconds"] = time.perf_counter() - start
    result["load_averages"] = bench.loads
    seconds = result["seconds"]
    if args.merge and (out_dir / "report.json").is_file():
        result = merged(json.loads((out_dir / "report.json").read_text()), result)
    (out_dir / "report.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out_dir / "report.md").write_text(report.render(result))
    print(
        f"[bench] wrote {out_dir / 'report.md'} and report.json in {seconds:.0f} s",
        file=sys.stderr,
    )
    return result


def _steps(text: str, repeats: int) -> dict:
    """``--smollm2-steps WARMUP,STEPS[,REPEATS]`` as plan entries."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or min(values) < 1:
        raise SystemExit(f"--smollm2-steps {text!r}: WARMUP,STEPS[,REPEATS], each at least 1")
    return {"warmup_steps": values[0], "steps": values[1], "repeats": [*values, repeats][2]}


def merged(old: dict, new: dict) -> dict:
    """``old`` (an earlier report.json) with ``new``'s sections in place of its own; the
    header stays ``old``'s, and ``merged`` records when and where the new ones ran. An
    earlier merge's record keeps only the sections nobody has measured since (the report
    names one invocation per section, the one whose figures it shows)."""
    out = {**old, "sections": {**old["sections"], **new["sections"]}}
    m = new["machine"]
    earlier = []
    for record in old.get("merged", []):
        still = [x for x in record["sections"] if x not in new["sections"]]
        if still:
            earlier.append({**record, "sections": still})
    out["merged"] = [
        *earlier,
        {"sections": list(new["sections"]), "date": m["date"], "cpu": m["cpu"],
         "commit": m["git"]["commit"], "threads": m["torch_threads"], "seconds": new["seconds"],
         "load_averages": new["load_averages"], "plan": new["plan"]},
    ]  # fmt: skip
    return out


def _jsonable(plan: dict) -> dict:
    out = {}
    for k, v in plan.items():
        if isinstance(v, dict):
            out[k] = {
                kk: asdict(vv) if hasattr(vv, "__dataclass_fields__") else vv
                for kk, vv in v.items()
            }
        elif hasattr(v, "__dataclass_fields__"):
            out[k] = asdict(v)
        else:
            out[k] = v
    return out


if __name__ == "__main__":
    main()
