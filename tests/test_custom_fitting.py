"""task=custom on data as it comes: the ODPO authors' own IMDB samples (responses far longer
than a micro model takes) cut, dropped or refused by data.truncation; chat-message prompts
through a model's chat template (and refused without one); the held-out evaluation in one
log-prob pass per distinct response."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.tasks import custom
from tests import tiny_llama
from tests.conftest import ROOT, ledger, micro_config, run_in_process

AUTHORS = ROOT / "tests" / "fixtures" / "odpo_authors" / "imdb-sft-test-head250.jsonl"


def _sample_info(tmp: Path) -> dict:
    (manifest,) = [p for p in (tmp / "cache" / "sample").glob("*/manifest.json")]
    return json.loads(manifest.read_text())["info"]


def _authors_rows() -> list[dict]:
    return [json.loads(line) for line in AUTHORS.read_text().splitlines()]


def test_the_authors_imdb_samples_run_with_the_truncation_reported(tmp_path: Path) -> None:
    done = run_in_process(["task=custom", f"data.path={AUTHORS}", "loss=dpo"], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "data.truncation=truncate:" in done.stdout
    info = _sample_info(tmp_path)
    assert info["responses_cut"] > 0
    # Independent count: every non-empty continuation is longer than the 64 positions of
    # the micro model minus its prompt, so all but the empty one are cut (held-out ones aside).
    assert info["responses_cut"] <= sum(1 for r in _authors_rows() if r["text"])


def test_truncation_error_stops_naming_the_file_and_row(tmp_path: Path) -> None:
    args = ["task=custom", f"data.path={AUTHORS}", "loss=dpo", "data.truncation=error"]
    done = run_in_process(args, tmp_path)
    assert done.returncode == 1
    assert str(AUTHORS) in done.stderr and "line" in done.stderr
    assert "Traceback" not in done.stderr


def test_truncation_drop_leaves_long_responses_out_of_every_pair(tmp_path: Path) -> None:
    # Every other continuation cut to its first five words by hand: those fit, the rest do not.
    rows = _authors_rows()
    for i, r in enumerate(rows):
        if i % 2:
            r["text"] = " ".join(r["text"].split()[:5])
    data = tmp_path / "half_short.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["task=custom", f"data.path={data}", "loss=dpo", "data.truncation=drop",
            "data.max_response_tokens=30", "n_pairs=5"]  # fmt: skip
    done = run_in_process(args, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    info = _sample_info(tmp_path)
    assert info["responses_dropped"] > 0 and info["responses_cut"] == 0
    import numpy as np

    (scores,) = (tmp_path / "cache" / "score").glob("*/scores.npz")
    given = np.load(scores)["score"]
    samples = json.loads(next((tmp_path / "cache" / "sample").glob("*/samples.json")).read_text())
    assert all(np.isnan(given[g, k]) for g, k in samples["dropped"])
    # A prompt too long drops its whole group (the authors' file: 10 responses a prompt).
    assert len(samples["dropped"]) == info["responses_dropped"] + 10 * info["groups_dropped"]


def _chat_pairs(path: Path) -> Path:
    rows = []
    for i in range(12):
        q = f"Say something about film number {i}."
        rows.append({
            "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": "A fine film."}],
            "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": f"No {i}."}],
            "score_chosen": 8.0, "score_rejected": 2.0,
        })  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_chat_message_prompts_go_through_the_models_template(tmp_path: Path) -> None:
    llama = tiny_llama.build(tmp_path / "lm")
    data = _chat_pairs(tmp_path / "chat.jsonl")
    args = ["task=custom", f"data.path={data}", "loss=dpo", "model=hf", f"model.path={llama}",
            "data.heldout_fraction=0.25", "data.max_prompt_tokens=64"]  # fmt: skip
    done = run_in_process(args, tmp_path / "run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    samples = json.loads(
        next((tmp_path / "run" / "cache" / "sample").glob("*/samples.json")).read_text()
    )
    from pipeline.modeling import models

    tok = models.load_tokenizer(llama)
    for prompt in samples["prompts"]:
        text = tok.decode(prompt)
        assert text.startswith("<|im_start|>user\nSay something about film number")
        assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_chat_message_prompts_without_a_template_are_refused_in_one_line(tmp_path: Path) -> None:
    data = _chat_pairs(tmp_path / "chat.jsonl")
    done = run_in_process(
        ["task=custom", f"data.path={data}", "data.heldout_fraction=0.25"], tmp_path
    )
    assert done.returncode == 1 and "model.chat_template" in done.stderr
    assert "Traceback" not in done.stderr


def test_held_out_log_probs_stay_float32_under_bf16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bf16 rounding swamps a held-out margin (pair accuracy 0.730 -> 0.567 on the same
    # SmolLM2 policy): the evaluation's log-probs run in float32 whatever the precision.
    seen: list = []
    monkeypatch.setattr(custom, "batched_logps", lambda *a, **k: seen.append(a[5:]) or [])
    monkeypatch.setattr(custom.models, "load_tokenizer", lambda _d: SimpleNamespace(pad_token_id=0))
    given = {"prompts": [[1, 2]], "responses": [[[3], [4, 5]]]}
    for precision in ("fp32", "bf16"):
        cfg = micro_config(
            tmp_path, "task=custom", f"data.path={AUTHORS}", f"precision={precision}"
        )
        custom.TASK._heldout_logps(cfg, None, tmp_path, given)
    assert seen == [("fp32",), ("fp32",)]


def test_held_out_evaluation_takes_one_log_prob_per_distinct_response(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows_seen: list[int] = []
    real = custom.batched_logps

    def counting(model, prompts, responses, *args, **kwargs):
        rows_seen.append(len(responses))
        return real(model, prompts, responses, *args, **kwargs)

    monkeypatch.setattr(custom, "batched_logps", counting)
    done = run_in_process(["task=custom", f"data.path={AUTHORS}", "loss=dpo"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (eval_file,) = (tmp_path / "cache" / "prompts").glob("*/eval_prompts.jsonl")
    n_eval = sum(len(json.loads(line)["responses"]) for line in eval_file.read_text().splitlines())
    # The heldout stage: one pass of the SFT model over the distinct held-out responses;
    # the SFT row: none (its log-ratio to itself is 0); the trained policy: one pass.
    assert rows_seen == [n_eval, n_eval]
    (heldout,) = (tmp_path / "cache" / "heldout").glob("*/heldout.npz")
    assert np.load(heldout)["logps"].shape == (n_eval,)
    # ... and the cached values give the numbers that computing them in the run gives.
    from pipeline.modeling import models

    cfg = micro_config(tmp_path, "task=custom", f"data.path={AUTHORS}", "loss=dpo")
    (sft,) = (tmp_path / "cache" / "sft").glob("*/model")
    (train,) = (tmp_path / "cache" / "train").glob("*/model")
    rows = [json.loads(line) for line in eval_file.read_text().splitlines()]
    policy, reference = models.load_model(train, "cpu").eval(), models.load_model(sft, "cpu").eval()
    cached = custom.TASK.eval_extras(
        cfg, policy, reference, sft, rows, {"logps": np.load(heldout)["logps"]}
    )
    computed = custom.TASK.eval_extras(cfg, policy, reference, sft, rows, None)
    for name in ("pair_accuracy", "margin"):
        np.testing.assert_array_equal(cached[name], computed[name])

    # A second run of the sweep (another beta) reuses the SFT model's values: one pass.
    rows_seen.clear()
    again = run_in_process(
        ["task=custom", f"data.path={AUTHORS}", "loss=dpo", "loss.beta=0.5"], tmp_path
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert rows_seen == [n_eval]
    assert [e["status"] for e in ledger(tmp_path) if e["stage"] == "heldout"] == [
        "computed", "reused"
    ]  # fmt: skip


def _reference_table(tmp: Path) -> np.ndarray:
    (found,) = (tmp / "cache" / "reference").glob("*/reference_logps.npz")
    return np.load(found)["logps"]


def test_a_few_pairs_of_a_large_file_score_only_the_responses_they_use(tmp_path: Path) -> None:
    # 20 pairs can use at most 40 of the file's ~225 training responses: auto scores those.
    args = ["task=custom", f"data.path={AUTHORS}", "loss=dpo", "n_pairs=20"]
    done = run_in_process(args, tmp_path / "few")
    assert done.returncode == 0, done.stderr[-2000:]
    (pairs_file,) = (tmp_path / "few" / "cache" / "pairs").glob("*/pairs.npz")
    pairs = np.load(pairs_file)
    used = {(int(g), int(k)) for side in ("chosen", "rejected")
            for g, k in zip(pairs["prompt"], pairs[side], strict=True)}  # fmt: skip
    scoped = _reference_table(tmp_path / "few")
    assert {tuple(map(int, ij)) for ij in np.argwhere(np.isfinite(scoped))} == used
    assert f"[reference] {len(used)} responses of " in done.stdout

    # data.reference_responses=all: every response, the same values on the shared ones.
    every = run_in_process([*args, "data.reference_responses=all"], tmp_path / "all")
    assert every.returncode == 0, every.stderr[-2000:]
    full = _reference_table(tmp_path / "all")
    assert np.isfinite(full).sum() > 4 * len(used)
    mask = np.isfinite(scoped)
    np.testing.assert_allclose(scoped[mask], full[mask], rtol=1e-5)


def test_the_reference_scope_follows_the_pairs_a_run_takes() -> None:
    from pipeline.orchestration import graph

    def keys(*extra: str) -> dict:
        return graph.stage_keys(micro_config(Path("/tmp/scope"), "task=custom",
                                             f"data.path={AUTHORS}", *extra))  # fmt: skip

    few, few_seed = keys("n_pairs=20"), keys("n_pairs=20", "seed=1")
    many, many_seed = keys("n_pairs=200"), keys("n_pairs=200", "seed=1")
    assert few["reference"] != few_seed["reference"]  # other pairs, other responses
    assert many["reference"] == many_seed["reference"]  # every response: one artifact
    assert keys("n_pairs=200", "data.reference_responses=pairs")["reference"] != many["reference"]
    assert keys("n_pairs=20", "data.reference_responses=all")["reference"] == many["reference"]
