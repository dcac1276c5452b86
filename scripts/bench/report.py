"""``report.md`` rendered from ``report.json`` (the JSON holds every number; the
Markdown only presents them): the header, then each section's part."""

from __future__ import annotations

from scripts.bench.markdown import _f, _mb, _table
from scripts.bench.report_data import render_data
from scripts.bench.report_smollm2 import render_smollm2
from scripts.bench.report_trl import render_trl


def render(report: dict) -> str:
    m, plan, sec = report["machine"], report["plan"], report["sections"]
    v = m["versions"]
    lines = [
        "# Benchmark: ODPO pipeline (`make bench`)",
        "",
        f"Measured {m['date']} on {m['cpu']}, {m['logical_cores']} logical cores "
        f"({m['cores_usable']} usable), {_f(m['memory_gb'])} GB; torch {v['torch']}, "
        f"transformers {v['transformers']}, trl {v['trl'] or 'not installed'}, "
        f"datasets {v['datasets']}, accelerate {v['accelerate']}, Python {m['python']}; "
        f"torch threads: {m['torch_threads']}, fp32"
        + (" (smollm2: its setup says)" if "smollm2" in sec else "")
        + f", CPU. Code: commit {m['git']['commit']}"
        + (
            f" with {m['git']['uncommitted_paths']} uncommitted paths"
            if m["git"]["uncommitted_paths"]
            else ""
        )
        + f". Bench scale `{plan['name']}`"
        + (" (shrunk for the tests: not for conclusions)" if plan["name"] == "micro" else "")
        + f"; {report['seconds']:.0f} s in all.",
        "",
        "Every figure below was measured in this one invocation: medians of "
        f"{plan['repeats']} timed repeats after a warm-up, ratios from the same run. "
        + _load_note(report),
        "",
        *_merged_note(report),
    ]
    for name, title in (
        ("trl", "Ours vs TRL's DPOTrainer"),
        ("smollm2", "Ours vs TRL on SmolLM2-135M-Instruct + LoRA"),
        ("sweep", "Work per sweep"),
        ("sampling", "Sampling throughput"),
        ("runs", "Seconds per training run"),
        ("optimizer", "Optimizer update"),
        ("data", "Reading published pair rows"),
        ("memory", "Peak memory per stage"),
        ("gpu", "GPU"),
    ):
        lines += [f"## {title}", ""]
        if name not in sec:
            opt_in = " (opt in: `--only smollm2`; `--merge` adds it here)" * (name == "smollm2")
            lines += [f"Not run in this invocation (`--only`){opt_in}.", ""]
            continue
        lines += RENDER[name](sec[name], report)
    return "\n".join(lines).rstrip() + "\n"


def _merged_note(report: dict) -> list[str]:
    """Sections measured by a later invocation (``--merge``), which replaced this one's."""
    return [  # each a paragraph of its own: "\n" + the join's "\n" leave a blank line
        f"**Merged from a later invocation** (`--merge`): {', '.join(m['sections'])}, "
        f"measured {m['date']} on {m['cpu']} at commit {m['commit']}, {m['threads']} threads, "
        f"{m['seconds']:.0f} s (the date, load and seconds above are the earlier "
        "invocation's).\n"
        for m in report.get("merged", [])
    ]


def _load_note(report: dict) -> str:
    """What the load average says about other work on the machine during the run."""
    loads = [x for _, before, after in report.get("load_averages", []) for x in (before, after)]
    loads.append(report["machine"]["load_average_at_start"])
    busy = max(loads)
    text = (
        f"1-minute load average around the pieces: {min(loads):.2f} to {busy:.2f} "
        "(report.json has it per piece). "
    )
    if busy > report["machine"]["torch_threads"] + 0.5:
        text += (
            "**The machine was shared during this run**: where the load exceeds what the "
            "benchmark itself uses, other processes took CPU time, so the absolute figures "
            "are low (two-thread runs suffer most: a descheduled thread stalls the other at "
            "every operation); ours and TRL's ran interleaved, so their ratios hold better."
        )
    return text


def _sweep(s: dict, report: dict) -> list[str]:
    if "error" in s:
        return [f"Failed: {s['error']}", ""]
    lines = [
        f"The `{s['experiment']}` grid at scale `{s['scale']}`: {s['runs']} runs ("
        + ", ".join(f"{k} ∈ {{{', '.join(v)}}}" for k, v in s["grid"].items())
        + "). Executions per stage counted from `pipeline.orchestration.graph.stage_keys` over the grid's "
        "configs (distinct cache keys, nothing trained), against the minimum (one data split, "
        "prompt set, SFT model and classifier; one sample set, its scores and one reference pass "
        "per seed; one pair subsample per seed and size; one training and evaluation per run "
        "plus the SFT model's evaluation) and a naive sweep that recomputes every stage in every "
        "run (its own SFT model, classifier, samples, scores, pairs, reference and baseline "
        "evaluation).",
        "",
    ]
    ledger = s.get("ledger")
    header = ["stage", "planned (cache)", "minimum", "naive"]
    if ledger:
        header += ["ledger: computed", "reused", "seconds computing", "s per computation"]
    rows = []
    for stage in s["planned"]:
        row = [stage, s["planned"][stage], s["minimum"][stage], s["naive"][stage]]
        if ledger:
            mine = ledger["per_stage"][stage]
            row += [
                mine["computed"],
                mine["reused"],
                _f(mine["computed_seconds"], 1),
                _f(s["seconds_per_computation"].get(stage), 2),
            ]
        rows.append(row)
    total = [sum(s[k].values()) for k in ("planned", "minimum", "naive")]
    if ledger:
        per = ledger["per_stage"].values()
        total += [
            sum(x["computed"] for x in per),
            sum(x["reused"] for x in per),
            _f(sum(x["computed_seconds"] for x in per), 1),
            "",
        ]
    rows.append(["**all**", *total])
    lines += _table(header, rows)
    if ledger:
        fallback = [k for k, v in s["seconds_per_computation_from"].items() if v != "per_stage"]
        lines += [
            f"Ledger `{ledger['path']}`: {ledger['lines']} lines, {ledger['lines_for_this_grid']} "
            "of them for this grid's keys (the ledger columns count only those; a sweep still "
            "running or cut short has computed less than planned). Seconds per computation are "
            "the ledger's mean for the stage"
            + (
                " (for " + ", ".join(fallback) + ": over every line of the ledger, other grids "
                "and configurations included, as this grid has none)"
                if fallback
                else ""
            )
            + f". At those rates the grid costs {_f(s['estimated_stage_seconds']['planned'], 0)} "
            f"stage-seconds as planned, {_f(s['estimated_stage_seconds']['minimum'], 0)} at the "
            f"minimum and {_f(s['estimated_stage_seconds']['naive'], 0)} naively"
            + (
                f" (no timing for {', '.join(s['stages_without_timing'])})"
                if s.get("stages_without_timing")
                else ""
            )
            + ".",
            "",
        ]
    else:
        lines += ["No ledger was given or found, so only the planned counts are shown.", ""]
    return lines


def _sampling(s: dict, report: dict) -> list[str]:
    b, q = s.get("batched", {}), s.get("sequential", {})
    if "error" in b or "error" in q:
        return [f"Failed: {b.get('error') or q.get('error')}", ""]
    return [
        s["setup"],
        "",
        *_table(
            [
                "method",
                "responses",
                "batch",
                "real tokens",
                "seconds (median)",
                "real tokens/s",
                "padded positions",
            ],
            [
                [
                    "`models.sample` (batched)",
                    b["responses"],
                    b["batch_size"],
                    b["real_tokens"],
                    _f(b["seconds_median"], 2),
                    _f(b["tokens_per_s"], 0),
                    f"{b['padded_share']:.1%} of all, {b['padded_share_generated']:.1%} of generated",
                ],
                [
                    "`model.generate`, one response per call",
                    q["responses"],
                    1,
                    q["real_tokens"],
                    _f(q["seconds_median"], 2),
                    _f(q["tokens_per_s"], 0),
                    "none",
                ],
            ],
        ),  # fmt: skip
        f"Batched is **{b['tokens_per_s'] / q['tokens_per_s']:.1f}×** the tokens/s of one call "
        f"per response. {b['ended_early_share']:.0%} of the batched responses ended with EOS "
        f"before the limit (mean {b['mean_response_tokens']:.1f} tokens).",
        "",
    ]


def _runs(s: dict, report: dict) -> list[str]:
    if "error" in s:
        return [f"Failed: {s['error']}", ""]
    rows = [
        [r["pairs"], r["steps"], _f(r["seconds_median"], 2), _f(r["pairs"] / r["seconds_median"], 0),
         ", ".join(f"{x:.2f}" for x in r["seconds"])]
        for r in s["points"]
    ]  # fmt: skip
    fit = s["fit"]
    return [
        s["setup"],
        "",
        *_table(["pairs", "steps", "seconds (median)", "pairs/s", "every repeat"], rows),
        f"Least-squares line: seconds = {fit['intercept']:.2f} + {fit['seconds_per_1000_pairs']:.3f} × "
        f"pairs/1000, R² = {fit['r2']:.4f}; largest deviation from the line "
        f"{fit['max_relative_residual']:.1%} of its point.",
        "",
    ]


def _optimizer(s: dict, report: dict) -> list[str]:
    if "error" in s:
        return [f"Failed: {s['error']}", ""]
    rows = [
        [f"{v['optimizer']}{' (compiled)' if v['compiled'] else ''}", v["parameters"],
         v["tensors"], _f(v["first_step_s"], 2), _f(v["step_ms_median"], 1)]
        for v in s["variants"]
    ]  # fmt: skip
    return [
        s["setup"],
        "",
        *_table(
            ["update", "parameters", "tensors", "first step (s)", "ms per step (median)"], rows
        ),
        f"Compiled RMSprop is **{s['compiled_speedup']:.1f}×** the eager one's speed; after the "
        f"warm-up its weights differ from the eager ones by at most {s['max_abs_difference']:.1e}, "
        f"where the updates moved them by up to {s['max_abs_move']:.1e}.",
        "",
    ]


def _memory(s: dict, report: dict) -> list[str]:
    if s.get("isolated") is False:
        return [
            "Not measured: this invocation ran its pieces in one process (`--inline`); "
            "without it each piece runs in a child process and its own peak is read.",
            "",
        ]
    rows = [
        [r["stage"], r["piece"], _mb(r["peak_rss_mb"]), _f(r.get("process_seconds"), 1)]
        for r in s["rows"]
    ]
    return [
        s["setup"],
        "",
        *_table(["stage", "measured piece", "peak RSS (MB)", "process seconds"], rows),
        s["note"],
        "",
    ]


def _gpu(s: dict, report: dict) -> list[str]:
    lines = [s["here"], ""]
    if s.get("separate_error"):
        lines += [f"A GPU file was found but could not be read: {s['separate_error']}", ""]
    other = s.get("separate")
    if other:
        device = other.get("device")
        if isinstance(device, dict):  # scripts/gpu_check.py: {"device": "cuda", "name": ...}
            device = device.get("name") or device.get("device")
        when = f", {other['date']}" if other.get("date") else ""
        name = device or "device not named in the file"
        lines += [
            f"**Measured in a separate invocation on another machine** ({name}{when}; "
            f"`{s['separate_path']}`): these figures are not from this run, and only its "
            "numbers and short strings are listed:",
            "",
            *_table(["figure", "value"], [[k, _f(v, 3)] for k, v in s["separate_flat"]]),
        ]
    return lines


RENDER = {
    "trl": render_trl,
    "smollm2": render_smollm2,
    "sweep": _sweep,
    "sampling": _sampling,
    "runs": _runs,
    "optimizer": _optimizer,
    "data": render_data,
    "memory": _memory,
    "gpu": _gpu,
}
