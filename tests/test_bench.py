"""`make bench` at the micro scale: the report has every section and figure, our loop
and TRL's give the same loss (when TRL is installed: it is no pipeline dependency, so
the pipeline's own venv, which CI uses, skips that part: `make bench` builds .venv-bench,
and `.venv-bench/bin/python -m pytest tests/test_bench.py` runs it), and the
work-per-sweep counts are right. Timings are never asserted, only that they were measured."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from scripts.bench import child, sweep
from scripts.bench.run import SECTIONS, main

HAS_TRL = importlib.util.find_spec("trl") is not None


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    ledger = out / "ledger.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        for var, value in child.QUIET_ENV.items():
            mp.setenv(var, value)  # restored afterwards: main() sets them for its pieces
        keys = sweep.planned_keys(sweep.grid_configs("sentiment"))
        sft_key = next(iter(keys["sft"]))
        train_keys = sorted(keys["train"])[:2]
        lines = [
            {"stage": "sft", "key": sft_key, "status": "computed", "seconds": 100.0},
            {"stage": "sft", "key": sft_key, "status": "reused", "seconds": 0.0},
            {"stage": "train", "key": train_keys[0], "status": "computed", "seconds": 20.0},
            {"stage": "train", "key": train_keys[1], "status": "computed", "seconds": 30.0},
            {"stage": "train", "key": "not-this-grid", "status": "computed", "seconds": 99.0},
            {"stage": "plot", "key": "x", "status": "computed", "seconds": 1.0},
        ]
        ledger.write_text("".join(json.dumps(line) + "\n" for line in lines))
        result = main(["--scale", "micro", "--out", str(out), "--inline", "--ledger", str(ledger)])
    return result, out


def test_writes_both_report_files_with_every_section(micro):
    result, out = micro
    saved = json.loads((out / "report.json").read_text())
    assert set(saved["sections"]) == set(SECTIONS)
    md = (out / "report.md").read_text()
    for title in ("Ours vs TRL", "Work per sweep", "Sampling", "Seconds per training run",
                  "Optimizer update", "Reading published pair rows", "Peak memory", "GPU"):  # fmt: skip
        assert f"## {title}" in md
    machine = saved["machine"]
    assert machine["cpu"] and machine["logical_cores"] >= 1 and machine["date"]
    assert machine["versions"]["torch"] and machine["versions"]["transformers"]
    assert not _errors(saved), _errors(saved)


def _errors(obj) -> list[str]:
    """Every piece that failed (an ``error`` entry anywhere in the report)."""
    if isinstance(obj, dict):
        return ([obj["error"]] if "error" in obj else []) + [
            e for v in obj.values() for e in _errors(v)
        ]
    if isinstance(obj, list):
        return [e for v in obj for e in _errors(v)]
    return []


def test_the_compiled_update_is_timed_and_reaches_the_eager_weights(micro):
    s = micro[0]["sections"]["optimizer"]
    variants = {(v["optimizer"], v["compiled"]): v for v in s["variants"]}
    assert set(variants) == {("rmsprop", False), ("rmsprop", True), ("adamw", False)}
    for v in variants.values():
        assert len(v["step_ms"]) == micro[0]["plan"]["optimizer_steps"] - 1
        assert v["parameters"] == variants[("adamw", False)]["parameters"] > 0
    assert 0 <= s["max_abs_difference"] < 1e-3 * s["max_abs_move"]  # the same update
    assert s["compiled_speedup"] > 0


def test_our_training_loop_is_measured_at_both_sizes(micro):
    sizes = micro[0]["sections"]["trl"]["sizes"]
    assert set(sizes) == {"embedded", "20M"}
    for entry in sizes.values():
        ours = entry["ours"]
        assert "error" not in ours, ours
        assert len(ours["train_seconds"]) == entry["repeats"]
        assert ours["pairs_per_s"] > 0 and ours["pairs_per_s_with_reference"] > 0
        assert ours["steady_pairs_per_s"] > 0
        assert ours["pairs_per_s_with_reference"] <= ours["pairs_per_s"]


@pytest.mark.skipif(not HAS_TRL, reason="trl is installed in .venv-bench only (make bench)")
def test_trl_gives_the_same_loss_and_is_timed(micro):
    section = micro[0]["sections"]["trl"]
    assert section["trl_version"]
    for size, eq in section["equality"].items():
        assert "error" not in eq, eq
        assert len(eq["ours"]) == len(eq["trl"]) == len(eq["trl_precompute"]) == eq["steps"]
        assert eq["max_abs_diff"] < 1e-4, (size, eq)
        # A second model as the reference: the first loss is not the trivial log 2.
        assert abs(eq["ours"][0] - 0.6931471805599453) > 1e-4
    for entry in section["sizes"].values():
        for side in ("trl", "trl_precompute"):
            assert "error" not in entry[side], entry[side]
            assert entry[side]["pairs_per_s"] > 0 and entry[side]["steady_pairs_per_s"] > 0
        assert entry["trl_precompute"]["reference_seconds_median"] > 0
        assert entry["ratio"] == entry["ratio_steady"] > 0
        assert isinstance(entry["target_met"], bool)


@pytest.mark.skipif(HAS_TRL, reason="checks the report without trl")
def test_without_trl_only_our_side_is_measured(micro):
    section = micro[0]["sections"]["trl"]
    assert section["trl_version"] is None and section["equality"] == {}
    for entry in section["sizes"].values():
        assert "trl" not in entry and "ratio" not in entry


def test_work_per_sweep_counts_the_sentiment_grid(micro):
    s = micro[0]["sections"]["sweep"]
    assert s["runs"] == 168
    assert s["planned"]["sft"] == s["planned"]["classifier"] == 1
    assert s["planned"]["sample"] == s["planned"]["reference"] == 2  # one per seed
    assert s["planned"]["pairs"] == 6  # per seed and size
    assert s["planned"]["train"] == 168 and s["planned"]["evaluate"] == 169
    assert s["planned"] == s["minimum"]
    assert s["naive"]["sft"] == 168 and s["naive"]["evaluate"] == 336
    ledger = s["ledger"]
    assert ledger["lines"] == 6 and ledger["lines_for_this_grid"] == 4
    assert ledger["per_stage"]["sft"]["computed"] == 1 and ledger["per_stage"]["sft"]["reused"] == 1
    assert ledger["per_stage"]["train"]["computed"] == 2
    assert s["seconds_per_computation"]["train"] == 25.0
    assert s["estimated_stage_seconds"]["naive"] > s["estimated_stage_seconds"]["planned"]


def test_sampling_and_run_times_are_measured(micro):
    sec = micro[0]["sections"]
    batched, one = sec["sampling"]["batched"], sec["sampling"]["sequential"]
    assert batched["tokens_per_s"] > 0 and one["tokens_per_s"] > 0
    assert 0 <= batched["padded_share"] < 1 and 0 <= batched["padded_share_generated"] < 1
    points = sec["runs"]["points"]
    assert [p["pairs"] for p in points] == [32, 48, 64]
    assert [p["steps"] for p in points] == [2, 3, 4]
    assert {"seconds_per_1000_pairs", "intercept", "r2"} <= set(sec["runs"]["fit"])


def test_the_data_section_reads_pair_rows_and_counts_their_pairs(micro):
    s = micro[0]["sections"]["data"]
    # One prompt per row, two distinct ratings each: one pair per training prompt, and
    # round(300 * 0.1) = 30 prompts held out.
    assert s["rows"] == 300 and s["groups"] == 300 and s["train_pairs"] == 270
    assert "layout auto -> pairs" in s["layout_line"]
    assert s["seconds"] >= s["read_seconds"] > 0 and s["file_mb"] > 0
    assert "## Reading published pair rows" in (micro[1] / "report.md").read_text()


def test_gpu_section_says_where_gpu_figures_come_from(micro, tmp_path):
    gpu = micro[0]["sections"]["gpu"]
    assert ("No GPU" in gpu["here"]) != gpu["cuda_available"]
    assert "separate" not in gpu


def test_a_separate_gpu_json_is_shown_labelled(tmp_path, monkeypatch):
    for var, value in child.QUIET_ENV.items():
        monkeypatch.setenv(var, value)
    (tmp_path / "gpu.json").write_text(
        json.dumps(
            {
                "device": {"device": "cuda", "name": "NVIDIA H100"},
                "dpo_step": {"bf16": {"mfu": 0.41}},
            }
        )
    )
    result = main(["--scale", "micro", "--out", str(tmp_path), "--inline", "--only", "gpu"])
    gpu = result["sections"]["gpu"]
    assert gpu["separate"]["device"]["name"] == "NVIDIA H100"
    md = (tmp_path / "report.md").read_text()
    assert "separate invocation on another machine** (NVIDIA H100" in md
    assert "dpo_step.bf16.mfu" in md
    assert "Not run in this invocation" in md  # the other sections


def test_a_piece_in_its_own_process_reports_its_peak_memory():
    out = child.run_isolated("baseline", {}, threads=1)
    assert out["peak_rss_mb"] > 50  # torch alone is more
    assert out["threads"] == 1


def test_ledger_lines_of_other_grids_are_not_counted(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text(
        '{"stage": "train", "key": "a", "status": "computed", "seconds": 2.0}\n'
        '{"stage": "train", "key": "a", "status": "reused", "seconds": 0.0}\n'
        '{"stage": "train", "key": "b", "status": "computed", "seconds": 5.0}\n'
        '{"stage": "sft", "key": "s", "status": "corrupt", "seconds": 0.0}\n'
    )
    found = sweep.read_ledger(path, {"train": {"a"}, "sft": {"s"}})
    assert found["lines"] == 4 and found["lines_for_this_grid"] == 3
    assert found["per_stage"]["train"] == {
        "computed": 1, "reused": 1, "other": 0, "distinct_keys_computed": 1,
        "computed_seconds": 2.0, "seconds_per_computation": 2.0,
    }  # fmt: skip
    assert found["per_stage"]["sft"]["other"] == 1
    assert found["per_stage_all_lines"]["train"]["computed"] == 2


def _smollm2_section(ours: float, trl: float, trl_precompute: float) -> dict:
    """A smollm2 section as ``smollm2.section`` returns it, with made-up figures."""
    from scripts.bench import smollm2

    def side(pairs_per_s: float, ref: list[float]) -> dict:
        step = 16 / pairs_per_s
        return {"pairs_per_s": pairs_per_s, "seconds_per_step_median": step,
                "step_seconds": [step] * 6, "call_seconds": [9 * step + 1],
                "reference_seconds": ref}  # fmt: skip

    training = {
        "pairs": 144, "sequence_tokens": 32, "batch_size": 16, "warmup_steps": 3, "steps": 6,
        "reference": {"rows": 200, "batch_size": 32, "tokens": 6400, "response_tokens": 4800,
                      "seconds": 4.0, "tokens_per_s": 1600.0, "response_tokens_per_s": 1200.0},
        "sides": {"ours": side(ours, []), "trl": side(trl, []),
                  "trl_precompute": side(trl_precompute, [3.0])},
    }  # fmt: skip
    run = {"seconds_median": 2.0, "real_tokens": 1536, "positions": 1536,
           "tokens_per_s": 768.0, "positions_per_s": 768.0}  # fmt: skip
    sampling = {"prompts": 64, "max_new_tokens": 24, "batch_size": 64, "temperature": 1.0,
                "top_p": 1.0, "repeats": 1, "runs": {"bf16": run, "fp32": run},
                "bf16_speedup": 1.0}  # fmt: skip
    targets = smollm2.targets(training, {"ratio": 1.5, "pairs_per_s": 8.0})
    return {"setup": "SETUP", "threads": 2, "training": training, "sampling": sampling,
            "targets": targets}  # fmt: skip


def test_the_smollm2_targets_are_judged_from_the_measured_figures():
    from scripts.bench.report_smollm2 import render_smollm2

    fast = _smollm2_section(ours=9.0, trl=4.0, trl_precompute=5.0)
    t = fast["targets"]
    assert t["trl_best_mode"] == "trl_precompute" and t["ratio"] == pytest.approx(1.8)
    assert t["ratio_met"] and t["pairs_per_s_met"] and t["met"]
    md = "\n".join(render_smollm2(fast, {}))
    assert "= **1.80×** against ≥ 1.5×: met" in md and "**9.00 pairs/s** against ≥ 8" in md
    assert "Both met." in md and "not met" not in md
    assert "| 1,600 |" in md and "| 768.0 |" in md  # reference and sampling tokens/s
    slow = _smollm2_section(ours=6.0, trl=4.5, trl_precompute=3.0)
    t = slow["targets"]
    assert t["trl_best_mode"] == "trl" and not t["ratio_met"] and not t["pairs_per_s_met"]
    md = "\n".join(render_smollm2(slow, {}))
    assert md.count("**not met**") == 2 and "= **1.33×**" in md


def test_the_smollm2_setup_names_the_model_adapters_and_lengths():
    from scripts.bench import notes, smollm2
    from scripts.bench.run import _steps, plans

    plan = plans()["full"]["smollm2"]
    s = smollm2.settings(smollm2.run_cfg())
    assert s["lora"]["r"] == 16 and s["batch_size"] == 16 and s["lr"] == 2e-4
    text = notes.smollm2_setup(plan, s, 2, "1.16.0", {})
    assert "Q4_1" in text and "r=16, alpha=32" in text and "every sequence 32 tokens" in text
    assert "144 pairs" in text and "3 warm-up + 6 measured steps" in text
    assert "one call per side" in text
    # the bench times the pipeline's own step: the experiment's kernel and policy
    assert s["attention"] == "eager" and "attention kernel `eager` on every side" in text
    assert "lora.for_training(model)" in text
    assert _steps("2,4", 1) == {"warmup_steps": 2, "steps": 4, "repeats": 1}
    assert _steps("2,4,3", 1)["repeats"] == 3
    for bad in ("0,4", "2", "a,b"):
        with pytest.raises(SystemExit):
            _steps(bad, 1)


def test_merge_adds_a_later_section_to_an_earlier_report(micro):
    from scripts.bench import report
    from scripts.bench.run import merged

    earlier = micro[0]
    later = {**earlier, "sections": {"smollm2": _smollm2_section(9.0, 4.0, 5.0)}, "seconds": 7.0}
    both = merged(earlier, later)
    assert set(both["sections"]) == set(SECTIONS) | {"smollm2"}
    assert both["merged"][0]["sections"] == ["smollm2"] and both["seconds"] == earlier["seconds"]
    md = report.render(both)
    assert "## Ours vs TRL on SmolLM2-135M-Instruct + LoRA" in md
    assert "Merged from a later invocation** (`--merge`): smollm2" in md
    assert "Not run in this invocation" not in md
    assert "opt in: `--only smollm2`" in report.render(earlier)
    # measured again: the report names the newest invocation of a section, once
    data = earlier["sections"][SECTIONS[0]]
    other = {**later, "sections": {SECTIONS[0]: data}, "seconds": 3.0}
    again = {**later, "seconds": 5.0}
    last = merged(merged(merged(earlier, later), other), again)
    assert [(m["sections"], m["seconds"]) for m in last["merged"]] == [
        ([SECTIONS[0]], 3.0),
        (["smollm2"], 5.0),
    ]
    assert report.render(last).count("Merged from a later invocation** (`--merge`): smollm2") == 1
