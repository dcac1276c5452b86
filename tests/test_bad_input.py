"""Bad input fails fast: exit code != 0, a one-line ``error: ...`` on stderr naming the
key, file or row, no traceback, and nothing left behind that looks finished. One case
per test (a parametrized test is one case per parameter).

Cases tried (stage = where it is caught; everything else is refused at start-up):

Hyperparameters
- loss.beta = 0, -0.5; loss.beta not a number; loss.alpha < 0
- sizes <= 0: n_pairs (0 and -5), scale.train.batch_size, scale.sample.batch_size,
  scale.eval.batch_size, scale.sft.batch_size, scale.sample.n_prompts,
  scale.sample.n_samples, scale.eval.n_prompts, scale.train.epochs, scale.sft.steps,
  scale.sample.max_new_tokens, scale.sample.prompt_tokens, scale.sft.max_length
- a size that is not an integer (scale.train.epochs=1.5); scale.sample.n_samples=1 (no pairs)
- learning rates <= 0 (scale.train.lr, scale.sft.lr); scale.train.warmup_steps < 0
- scale.sample.top_p > 1 and = 0; scale.sample.temperature < 0; seed < 0; seed not a number
- data.heldout_fraction >= 1 and <= 0; threads = 0; threads other than the scale fixes
- scale.model.n_positions shorter than the longest sequence; n_embd not a multiple of n_head
- device not a torch device; device=cuda without a GPU (skipped where there is one)
- wandb.mode unknown

Sizes larger than the data
- n_pairs beyond n_prompts x C(n_samples, 2); n_pairs beyond the pairs left once ties are
  removed (pairs stage; skipped if that sample set has no ties)
- scale.sample.n_prompts and scale.eval.n_prompts beyond the held-out texts (prompts stage)

Unknown names
- loss=kto, offset=cubic, scorer=nope, task=nope: refused by ``python -m pipeline``
  before Hydra composes the config (one ``error:`` line listing the options)
- a misspelt key (loss.betta): Hydra refuses it while composing the config, with its own
  multi-line message (exit code 1, no traceback, names the key) instead of ``error:``
- loss.name, offset.name, scorer.name, scale.train.optimizer, data.source unknown

Models and data sets
- scale.model.pretrained=/nonexistent (a path that does not exist)
- a hub model while offline (scale=paper; scale.model.pretrained=<hub id>); the hub scorer
  while offline (scorer.name=hf_pipeline); the hub data set while offline (data.source=hub)

Data file (data.path)
- missing file; empty file; a row with empty text (data stage); no text column (data stage);
  an unsupported extension (data stage); a label that is not 0/1 (data stage)

task=custom (tests/test_custom_task.py runs well-formed files end to end)
- samples_file (replaced by task=custom) is refused, naming task=custom
- no data.path; a missing file; a line that is not JSON (command line); a line that is not
  an object; no prompt; a score that is not a number; a NaN score; scores and responses of
  different lengths; a flat row without its score; a response longer than the model's
  positions (sample stage); scores that all tie (no pairs); offset=log_ratio on a score <= 0
- offsets where they are undefined: log_ratio on zero scores and log_diff on ties through
  train.pair_offsets (in-process)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, run_cli, run_in_process

FIXTURES = ROOT / "tests" / "fixtures"


def assert_clean_failure(
    tmp: Path,
    args: list[str],
    *needles: str,
    env: dict | None = None,
    hydra: bool = False,
    cli: bool = False,
) -> str:
    """Exit code != 0, no traceback, every needle on stderr, nothing that looks finished.
    Unless ``hydra`` (Hydra's own composition errors), the last stderr line is ``error: ...``.
    ``cli`` cases (and sweeps) start the real command line, a new process each (~5 s);
    the others go through the same entry point in-process (``run_in_process``)."""
    if cli or hydra or any(a.startswith("-") for a in args):
        done = run_cli(args, tmp, check=False, env=env)
    else:
        done = run_in_process(args, tmp, env=env)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    if not hydra:
        assert last.startswith("error:"), done.stderr[-2000:]
    for needle in needles:
        assert needle in done.stderr, done.stderr[-2000:]
    assert not (tmp / "results" / "runs.csv").exists()
    # No stage directory without a manifest (an unfinished output never looks finished).
    for stage_dir in (tmp / "cache").glob("*/*"):
        if stage_dir.is_dir() and stage_dir.parent.name != "downloads":
            assert (stage_dir / "manifest.json").is_file() or stage_dir.name.startswith(
                (".tmp", ".ckpt")
            ), stage_dir
    return last


def assert_refused_at_startup(tmp: Path, args: list[str], *needles: str) -> str:
    line = assert_clean_failure(tmp, args, *needles)
    assert not (tmp / "cache" / "data").exists()  # refused before any work
    return line


# ---- hyperparameters ------------------------------------------------------------------


@pytest.mark.parametrize("beta", ["0", "-0.5"])
def test_beta_not_positive(tmp_path: Path, beta: str) -> None:
    line = assert_clean_failure(tmp_path, [f"loss.beta={beta}"], "loss.beta", cli=True)
    assert line.startswith("error:")
    assert not (tmp_path / "cache" / "data").exists()  # refused before any work


def test_beta_not_a_number(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["loss.beta=abc"], "loss.beta", "must be a number")


def test_alpha_negative(tmp_path: Path) -> None:
    assert_clean_failure(tmp_path, ["loss.alpha=-1"], "loss.alpha")


@pytest.mark.parametrize(
    "key",
    [
        "scale.train.batch_size",
        "scale.sample.batch_size",
        "scale.eval.batch_size",
        "scale.sft.batch_size",
        "scale.sample.n_prompts",
        "scale.sample.n_samples",
        "scale.eval.n_prompts",
        "scale.train.epochs",
        "scale.sft.steps",
        "scale.sample.max_new_tokens",
        "scale.sample.prompt_tokens",
        "scale.sft.max_length",
    ],
)
def test_size_zero(tmp_path: Path, key: str) -> None:
    assert_refused_at_startup(tmp_path, [f"{key}=0"], f"{key}=0", "must be > 0")


@pytest.mark.parametrize("n_pairs", ["0", "-5"])
def test_n_pairs_not_positive(tmp_path: Path, n_pairs: str) -> None:
    assert_refused_at_startup(tmp_path, [f"n_pairs={n_pairs}"], f"n_pairs={n_pairs}")


def test_size_not_an_integer(tmp_path: Path) -> None:
    assert_refused_at_startup(
        tmp_path, ["scale.train.epochs=1.5"], "scale.train.epochs", "an integer"
    )


def test_one_sample_per_prompt(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["scale.sample.n_samples=1"], "scale.sample.n_samples")


@pytest.mark.parametrize("key", ["scale.train.lr=0", "scale.sft.lr=-1e-3"])
def test_learning_rate_not_positive(tmp_path: Path, key: str) -> None:
    assert_refused_at_startup(tmp_path, [key], key.split("=")[0])


def test_warmup_negative(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["scale.train.warmup_steps=-1"], "scale.train.warmup_steps")


@pytest.mark.parametrize("top_p", ["1.5", "0"])
def test_top_p_out_of_range(tmp_path: Path, top_p: str) -> None:
    assert_refused_at_startup(tmp_path, [f"scale.sample.top_p={top_p}"], "scale.sample.top_p")


def test_temperature_negative(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["scale.sample.temperature=-1"], "scale.sample.temperature")


def test_seed_negative(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["seed=-1"], "seed=-1")


def test_seed_not_a_number(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["seed=abc"], "seed", "an integer")


@pytest.mark.parametrize("fraction", ["1.5", "0"])
def test_heldout_fraction_out_of_range(tmp_path: Path, fraction: str) -> None:
    assert_refused_at_startup(
        tmp_path, [f"data.heldout_fraction={fraction}"], "data.heldout_fraction"
    )


def test_threads_zero(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["threads=0"], "threads=0")


@pytest.mark.parametrize("override", ["threads=2", "scale.threads=2"])
def test_threads_other_than_the_scale_fixes(tmp_path: Path, override: str) -> None:
    # Threads change the numbers and are in no cache key, so each scale fixes them.
    assert_refused_at_startup(tmp_path, [override], override, "scale=micro fixes threads=1")


def test_positions_too_short(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["scale.model.n_positions=8"], "scale.model.n_positions")


def test_heads_do_not_divide_width(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["scale.model.n_head=3"], "scale.model.n_head")


def test_device_unknown(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["device=gpu0"], "device='gpu0'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_device_cuda_without_gpu(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["device=cuda"], "device='cuda'", "no CUDA GPU")


def test_wandb_mode_unknown(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["wandb.mode=loud"], "wandb.mode")


# ---- sizes larger than the data -------------------------------------------------------


def test_n_pairs_larger_than_possible(tmp_path: Path) -> None:
    assert_clean_failure(tmp_path, ["n_pairs=1000000"], "n_pairs")


def test_n_pairs_larger_than_existing_pairs(tmp_path: Path) -> None:
    # Within the combinatorial bound (30 prompts x 6 pairs = 180) but more than exist
    # once ties are removed is caught at the pairs stage, before training.
    done = run_cli(["n_pairs=180", "scale.sample.max_new_tokens=1"], tmp_path, check=False)
    if done.returncode == 0:
        pytest.skip("this sample set happened to have no ties")
    assert "n_pairs=180" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "cache" / "train").exists()


@pytest.mark.parametrize("key", ["scale.sample.n_prompts", "scale.eval.n_prompts"])
def test_more_prompts_than_heldout_texts(tmp_path: Path, key: str) -> None:
    assert_clean_failure(tmp_path, [f"{key}=1000"], f"{key}=1000", "held-out")
    assert not (tmp_path / "cache" / "sft").exists()


# ---- unknown names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "needle"),
    [("offset=cubic", "offset=cubic is unknown"), ("scorer=nope", "scorer=nope is unknown"),
     ("task=nope", "task=nope is unknown"), ("loss=dpo,kto", "loss=kto is unknown")],
)  # fmt: skip
def test_unknown_group_option_is_one_line_before_hydra(arg: str, needle: str, capsys) -> None:
    """What ``python -m pipeline`` checks before Hydra composes (test_unknown_loss runs it)."""
    from pipeline.orchestration.main import check_choices

    with pytest.raises(SystemExit) as stop:
        check_choices([arg])
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err


def test_unknown_offset_name(tmp_path: Path) -> None:
    assert_clean_failure(tmp_path, ["offset.name=cubic"], "offset.name")


def test_unknown_loss(tmp_path: Path) -> None:
    assert_clean_failure(tmp_path, ["loss=kto"], "loss=kto is unknown", cli=True)


def test_unknown_loss_name(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["loss.name=kto"], "loss.name='kto'")


def test_unknown_scorer_name(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["scorer.name=nope"], "scorer.name='nope'")


def test_misspelt_key(tmp_path: Path) -> None:
    assert_clean_failure(tmp_path, ["loss.betta=1"], "betta", hydra=True)


def test_unknown_optimizer(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["scale.train.optimizer=sgd"], "scale.train.optimizer")


def test_unknown_data_source(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["data.source=ftp"], "data.source='ftp'")


# ---- models and data sets -------------------------------------------------------------


def test_model_path_missing(tmp_path: Path) -> None:
    assert_refused_at_startup(
        tmp_path, ["scale.model.pretrained=/nonexistent"], "scale.model.pretrained", "/nonexistent"
    )


def test_hub_model_while_offline(tmp_path: Path) -> None:
    assert_clean_failure(
        tmp_path, ["scale=paper", "device=cpu", "offline=true"], "scale.model.pretrained", "offline"
    )


def test_hub_model_id_while_offline(tmp_path: Path) -> None:
    assert_refused_at_startup(
        tmp_path,
        ["scale.model.pretrained=no-such-org/no-such-model"],
        "scale.model.pretrained",
        "offline",
    )


def test_hub_scorer_while_offline(tmp_path: Path) -> None:
    args = [
        "scorer.name=hf_pipeline",
        "scorer.model=lvwerra/distilbert-imdb",
        "scorer.label=POSITIVE",
        "scorer.batch_size=8",
    ]
    assert_refused_at_startup(tmp_path, args, "scorer.model", "offline")


def test_hub_data_set_while_offline(tmp_path: Path) -> None:
    args = ["data.source=hub", "data.name=stanfordnlp/imdb"]
    assert_refused_at_startup(tmp_path, args, "data.name", "offline")


# ---- the data file --------------------------------------------------------------------


def test_malformed_data_row(tmp_path: Path) -> None:
    bad = tmp_path / "reviews.csv"
    lines = (FIXTURES / "sentiment_reviews.csv").read_text().splitlines()
    lines[5] = ",1"  # a row with empty text
    bad.write_text("\n".join(lines) + "\n")
    assert_clean_failure(tmp_path, [f"data.path={bad}"], str(bad), "row")


def test_missing_data_file(tmp_path: Path) -> None:
    assert_clean_failure(tmp_path, [f"data.path={tmp_path / 'nope.csv'}"], "nope.csv", cli=True)


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl"])
def test_empty_data_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("\n")
    assert_refused_at_startup(tmp_path, [f"data.path={tmp_path / name}"], name, "empty")


def test_data_file_missing_text_field(tmp_path: Path) -> None:
    bad = tmp_path / "reviews.jsonl"
    bad.write_text("".join(json.dumps({"body": "fine film", "label": 1}) + "\n" for _ in range(50)))
    assert_clean_failure(tmp_path, [f"data.path={bad}"], "text")


def test_data_file_unsupported_extension(tmp_path: Path) -> None:
    bad = tmp_path / "reviews.txt"
    bad.write_text((FIXTURES / "sentiment_reviews.csv").read_text())
    assert_clean_failure(tmp_path, [f"data.path={bad}"], "reviews.txt", "extension")


def test_data_label_not_binary(tmp_path: Path) -> None:
    bad = tmp_path / "reviews.csv"
    lines = (FIXTURES / "sentiment_reviews.csv").read_text().splitlines()
    lines[3] = "A fine film.,5"
    bad.write_text("\n".join(lines) + "\n")
    assert_clean_failure(tmp_path, [f"data.path={bad}"], str(bad), "label")


# ---- task=custom: your own scored data (samples_file is replaced by it) ---------------


CUSTOM = FIXTURES / "custom_grouped.jsonl"


def custom_file(tmp: Path, bad_line: str | None = None) -> Path:
    """The grouped fixture, with line 3 replaced by ``bad_line`` when given."""
    lines = CUSTOM.read_text().splitlines()
    if bad_line is not None:
        lines[2] = bad_line
    path = tmp / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_bad_custom_line(tmp: Path, bad: str, *needles: str) -> None:
    path = custom_file(tmp, bad)
    assert_refused_at_startup(
        tmp, ["task=custom", f"data.path={path}"], str(path), "line 3", *needles
    )


def test_samples_file_is_refused_naming_task_custom(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, [f"samples_file={CUSTOM}"], "samples_file", "task=custom")


def test_custom_without_a_file(tmp_path: Path) -> None:
    assert_refused_at_startup(tmp_path, ["task=custom"], "data.path")


def test_custom_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert_refused_at_startup(
        tmp_path, ["task=custom", f"data.path={missing}"], str(missing), "does not exist"
    )


def test_custom_line_not_json(tmp_path: Path) -> None:
    path = custom_file(tmp_path, '{"prompt": "The film", "responses": [" is')
    assert_clean_failure(tmp_path, ["task=custom", f"data.path={path}"], str(path), "line 3")


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ('["a", "b"]', "object"),
        ('{"responses": ["a", "b"], "scores": [1, 2]}', "prompt"),
        ('{"prompt": "p", "responses": ["a", "b"], "scores": [1, "high"]}', "score"),
        ('{"prompt": "p", "responses": ["a", "b"], "scores": [1, NaN]}', "score"),
        ('{"prompt": "p", "responses": ["a", "b"], "scores": [1]}', "line 3"),
        ('{"prompt": "p", "text": "a"}', "reward"),
    ],
    ids=["not-an-object", "no-prompt", "score-not-a-number", "score-nan", "lengths", "no-score"],
)
def test_custom_malformed_line(tmp_path: Path, bad: str, needle: str) -> None:
    assert_bad_custom_line(tmp_path, bad, needle)


def test_custom_response_too_long(tmp_path: Path) -> None:
    long = " and".join(["wonderful", "funny", "charming", "moving"] * 12)
    row = {"prompt": "The film", "responses": [" is good.", long], "scores": [1.0, 2.0]}
    path = custom_file(tmp_path, json.dumps(row))
    # Cut by default (data.truncation=truncate, tests/test_custom_fitting.py); refused under
    # data.truncation=error once the SFT tokenizer exists: at sampling (a training prompt)
    # or at evaluation (a held-out one), before any number is published.
    args = ["task=custom", f"data.path={path}", "data.truncation=error"]
    assert_clean_failure(tmp_path, args, str(path), "line 3", "positions")


def test_custom_scores_all_tie(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in CUSTOM.read_text().splitlines() if line.strip()]
    path = tmp_path / "ties.jsonl"
    path.write_text(
        "".join(json.dumps({**r, "scores": [2.0] * len(r["scores"])}) + "\n" for r in rows)
    )
    assert_refused_at_startup(
        tmp_path, ["task=custom", f"data.path={path}"], "no pair with different scores"
    )


@pytest.mark.parametrize("score", [-1.0, 0.0])
def test_custom_log_ratio_on_non_positive_score(tmp_path: Path, score: float) -> None:
    rows = [json.loads(line) for line in CUSTOM.read_text().splitlines() if line.strip()]
    for r in rows:
        r["scores"] = [score] + [float(k + 1) for k in range(len(r["scores"]) - 1)]
    path = tmp_path / "nonpositive.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert_refused_at_startup(
        tmp_path, ["task=custom", f"data.path={path}", "offset=log_ratio"], "offset=log_ratio",
        "scores > 0",
    )  # fmt: skip


def test_log_ratio_undefined_on_zero_scores() -> None:
    from omegaconf import OmegaConf

    from pipeline.infra.errors import ConfigError
    from pipeline.stages.train import pair_offsets

    cfg = OmegaConf.create(
        {"loss": {"name": "odpo", "alpha": 1.0}, "offset": {"name": "log_ratio"}}
    )
    pairs = {"score_chosen": [1.5, 0.4], "score_rejected": [0.2, 0.0]}
    with pytest.raises(ConfigError, match="log_ratio.*pair 1"):
        pair_offsets(cfg, pairs)


def test_log_diff_undefined_on_ties() -> None:
    from omegaconf import OmegaConf

    from pipeline.infra.errors import ConfigError
    from pipeline.stages.train import pair_offsets

    cfg = OmegaConf.create({"loss": {"name": "odpo", "alpha": 1.0}, "offset": {"name": "log_diff"}})
    with pytest.raises(ConfigError, match="log_diff"):
        pair_offsets(cfg, {"score_chosen": [1.5, 1.2], "score_rejected": [0.2, 1.2]})
