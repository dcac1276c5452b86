"""The ``smollm2`` section's part of ``report.md``: ours vs TRL on SmolLM2-135M-Instruct
with LoRA (pairs/s, the ratio, the targets met or not), the reference pass and sampling
throughput. Every figure comes from the section's dict; nothing here is a measurement."""

from __future__ import annotations

from scripts.bench.markdown import _f, _table

SIDES = {
    "ours": "ours (`train_pairs`, LoRA policy)",
    "trl": "TRL `DPOTrainer` + `peft_config`",
    "trl_precompute": "TRL, ref precomputed",
}


def render_smollm2(s: dict, report: dict) -> list[str]:
    lines = [s["setup"], ""]
    if "error" in s:
        return lines + [f"Failed: {s['error']}", ""]
    tr = s["training"]
    if "error" in tr:
        lines += [f"Training failed: {tr['error']}", ""]
    else:
        lines += _training(tr) + _targets(s["targets"], s["threads"], tr)
        lines += _reference(tr["reference"])
    lines += _sampling(s["sampling"])
    return lines


def _load(piece: dict) -> str:
    if "load_before" not in piece:
        return ""
    return f" 1-minute load average {piece['load_before']:.2f} before, {piece['load_after']:.2f} after."


def _training(tr: dict) -> list[str]:
    rows = []
    for side, name in SIDES.items():
        if side not in tr["sides"]:
            continue
        x = tr["sides"][side]
        ref = x["reference_seconds"]
        rows.append([
            name, _f(x["pairs_per_s"], 2), _f(x["seconds_per_step_median"], 2),
            ", ".join(f"{v:.2f}" for v in x["step_seconds"]),
            ", ".join(f"{v:.1f}" for v in x["call_seconds"]),
            "in each step" if side == "trl" else
            _f(tr["reference"]["seconds"], 1) if side == "ours" else
            ", ".join(f"{v:.1f}" for v in ref) or "–",
        ])  # fmt: skip
    return [
        f"**Training** ({tr['pairs']} pairs of {tr['sequence_tokens']}-token sequences, "
        f"batch {tr['batch_size']}; steady state after {tr['warmup_steps']} warm-up steps, "
        f"{tr['steps']} measured per call).{_load(tr)}",
        "",
        *_table(
            [
                "side",
                "pairs/s (steady)",
                "s per step (median)",
                "every measured step (s)",
                "whole call (s)",
                "ref pass (s)",
            ],
            rows,
        ),  # fmt: skip
    ]


def _targets(t: dict, threads: int, tr: dict) -> list[str]:
    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    parts = []
    if "ratio" in t:
        mode = (
            "precomputed reference"
            if t["trl_best_mode"] == "trl_precompute"
            else "reference per step"
        )
        parts.append(
            f"ours / TRL's faster mode ({mode}, {_f(t['trl_best_pairs_per_s'], 2)} pairs/s) = "
            f"**{t['ratio']:.2f}×** against ≥ {t['min_ratio']:g}×: {mark(t['ratio_met'])}"
        )
    else:
        parts.append("the ratio to TRL: not measured (TRL is not installed here)")
    parts.append(
        f"ours **{_f(t['pairs_per_s'], 2)} pairs/s** against ≥ {t['min_pairs_per_s']:g} at "
        f"{tr['sequence_tokens']}-token sequences on {threads} thread(s): "
        f"{mark(t['pairs_per_s_met'])}"
    )
    return [
        f"**Target** (ours ≥ {t['min_ratio']:g}× TRL's and ≥ {t['min_pairs_per_s']:g} pairs/s): "
        + "; ".join(parts)
        + (". Both met." if t["met"] else ". Not met."),
        "",
    ]


def _reference(r: dict) -> list[str]:
    return [
        f"**Reference pass** (`inference.batched_logps` on the model, the distinct responses "
        f"the pairs use, batch {r['batch_size']}):",
        "",
        *_table(
            ["rows", "tokens (prompt + response)", "seconds", "tokens/s", "response tokens/s"],
            [
                [
                    r["rows"],
                    r["tokens"],
                    _f(r["seconds"], 2),
                    _f(r["tokens_per_s"], 0),
                    _f(r["response_tokens_per_s"], 0),
                ]
            ],
        ),  # fmt: skip
    ]


def _sampling(s: dict) -> list[str]:
    if "error" in s:
        return [f"Sampling failed: {s['error']}", ""]
    rows = [
        [f"`{p}`" + (" autocast" if p == "bf16" else ""), s["batch_size"], r["real_tokens"],
         r["positions"], _f(r["seconds_median"], 2), _f(r["tokens_per_s"], 1),
         _f(r["positions_per_s"], 1)]
        for p, r in s["runs"].items()
    ]  # fmt: skip
    lines = [
        f"**Sampling** (`models.sample`, {s['prompts']} prompts × up to {s['max_new_tokens']} "
        f"new tokens in one batch, temperature {s['temperature']:g}, top-p {s['top_p']:g}; "
        f"median of {s['repeats']}).{_load(s)}",
        "",
        *_table(
            [
                "precision",
                "batch",
                "real tokens",
                "positions",
                "seconds",
                "real tokens/s",
                "positions/s",
            ],
            rows,
        ),  # fmt: skip
    ]
    if s.get("bf16_speedup") is not None:
        lines += [f"bf16 autocast samples at **{s['bf16_speedup']:.2f}×** the fp32 tokens/s.", ""]
    return lines
