"""Behaviour with a known answer: the pipeline must not only run, it must compute the
right thing.

The micro pipeline is run with the ``keyword`` scorer (conf/scorer/keyword.yaml):
p = k / (k + half), k = the count of the letter "e" in a text. Its optimum is certain
(more "e"), so after DPO or ODPO training:
- the eval reward is above the SFT model's, and equals the scorer re-applied to the
  saved evaluation texts;
- on the training pairs, the policy's log-prob of chosen responses rose relative to
  rejected ones, so the implicit-reward margin is positive (it is 0 at the start);
- KL to the SFT model is exactly 0 for the SFT model itself, positive after training,
  and equal to KL(policy || SFT) recomputed here from the saved samples (not the
  reverse direction);
- at step 0 (policy = reference) the logged loss is log 2 for DPO and the mean of
  softplus(offset) over the first batch for ODPO; the logged offset of every step is
  alpha * log(score_w - score_l) averaged over that step's pairs;
- ODPO with alpha = 0 trains weights identical to DPO's; with alpha = 1 it does not;
- a larger beta stays closer to the SFT model.
Every expected value is computed here, independently of the code under test.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_in_process

SETTINGS = [
    "scorer=keyword",
    "scale.sample.n_samples=8",  # 30 prompts x 28 pairs, few ties
    "n_pairs=400",
    "scale.train.lr=5e-3",  # a step large enough that the direction shows at once
    "scale.eval.n_prompts=30",
]
RUNS = {
    "dpo": ["loss=dpo"],
    "odpo": ["loss=odpo", "loss.alpha=1"],
    "odpo_a0": ["loss=odpo", "loss.alpha=0"],
    "dpo_beta1": ["loss=dpo", "loss.beta=1"],
}
BETA = 0.1  # the micro default for the runs above but dpo_beta1
HALF = 4.0


def keyword_p(text: str) -> float:
    k = len(re.findall("e", text, flags=re.IGNORECASE))
    return k / (k + HALF)


def stage_dir(cache: Path, stage: str, predicate=None) -> list[Path]:
    dirs = [p for p in (cache / stage).iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [p for p in dirs if predicate is None or predicate(p)]


def config_of(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four micro runs sharing one cache; name -> {row, train dir, eval dir}."""
    tmp = tmp_path_factory.mktemp("behaviour")
    out: dict = {"tmp": tmp, "cache": tmp / "cache"}
    for args in RUNS.values():
        done = run_in_process([*SETTINGS, *args], tmp)
        assert done.returncode == 0, done.stderr[-3000:]
    out["table"] = pd.read_csv(tmp / "results" / "runs.csv")
    cache = out["cache"]
    trains = {}
    for path in stage_dir(cache, "train"):
        params = config_of(path)["params"]
        trains[(params["loss"], params.get("alpha", 0.0), params["beta"])] = path
    out["train"] = {
        "dpo": trains[("dpo", 0.0, BETA)],
        "odpo": trains[("odpo", 1.0, BETA)],
        "odpo_a0": trains[("odpo", 0.0, BETA)],
        "dpo_beta1": trains[("dpo", 0.0, 1.0)],
    }
    (sft,) = stage_dir(cache, "sft")
    (samples,) = stage_dir(cache, "sample")
    (pairs,) = stage_dir(cache, "pairs")
    (reference,) = stage_dir(cache, "reference")
    out.update(sft=sft, samples=samples, pairs=pairs, reference=reference)
    return out


def row(runs: dict, loss: str, alpha: float = 0.0, beta: float = BETA) -> pd.Series:
    t = runs["table"]
    if loss == "sft":
        return t[t["loss"] == "sft"].iloc[0]
    pick = t[(t["loss"] == loss) & np.isclose(t["beta"], beta) & np.isclose(t["alpha"], alpha)]
    assert len(pick) == 1, pick
    return pick.iloc[0]


def eval_dir(runs: dict, key: str) -> Path:
    return runs["cache"] / "evaluate" / key


def load_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path / "model")).double().eval()


@torch.no_grad()
def token_logprobs(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    """(len(response), V) next-token log-probabilities at each response position."""
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0].double()
    return torch.log_softmax(logits[len(prompt) - 1 : len(prompt) + len(response) - 1], -1)


def sequence_logp(model, prompt: list[int], response: list[int]) -> float:
    lp = token_logprobs(model, prompt, response)
    return float(lp[torch.arange(len(response)), torch.tensor(response)].sum())


@pytest.mark.parametrize(("loss", "alpha"), [("dpo", 0.0), ("odpo", 1.0)])
def test_eval_reward_rises_above_sft_towards_the_known_optimum(runs, loss, alpha) -> None:
    sft, trained = row(runs, "sft"), row(runs, loss, alpha)
    assert trained["reward"] > sft["reward"] + 0.1, (trained["reward"], sft["reward"])


@pytest.mark.parametrize("which", ["sft", "dpo", "odpo"])
def test_eval_reward_is_the_scorer_on_the_saved_samples(runs, which) -> None:
    r = row(runs, which, 1.0 if which == "odpo" else 0.0)
    samples = json.loads((eval_dir(runs, r["eval_key"]) / "samples.json").read_text())
    expected = np.mean([keyword_p(s["text"]) for s in samples])
    assert r["reward"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("name", "loss", "alpha"), [("dpo", "dpo", 0.0), ("odpo", "odpo", 1.0)])
def test_policy_prefers_chosen_over_rejected_on_training_pairs(runs, name, loss, alpha) -> None:
    pairs = np.load(runs["pairs"] / "pairs.npz")
    s = json.loads((runs["samples"] / "samples.json").read_text())
    policy, sft = load_model(runs["train"][name]), load_model(runs["sft"])
    idx = np.random.default_rng(0).choice(len(pairs["prompt"]), 48, replace=False)
    before, after = [], []
    for i in idx:
        p, c, r = (int(pairs[k][i]) for k in ("prompt", "chosen", "rejected"))
        prompt, chosen, rejected = s["prompts"][p], s["responses"][p][c], s["responses"][p][r]
        before.append(sequence_logp(sft, prompt, chosen) - sequence_logp(sft, prompt, rejected))
        after.append(
            sequence_logp(policy, prompt, chosen) - sequence_logp(policy, prompt, rejected)
        )
    margin = BETA * (np.array(after) - np.array(before))  # implicit-reward margin
    assert margin.mean() > 0.05, margin.mean()
    assert (margin > 0).mean() > 0.7
    # The logged curve agrees: margin 0 at the first step, positive at the end.
    log = pd.read_csv(runs["train"][name] / "train_log.csv")
    assert abs(log["train/margins"].iloc[0]) < 1e-4
    assert log["train/margins"].tail(5).mean() > 0.05


def test_kl_is_zero_for_sft_and_positive_after_training(runs) -> None:
    sft = row(runs, "sft")
    assert sft["kl"] == 0 and sft["kl_exact"] == 0
    for loss, alpha in (("dpo", 0.0), ("odpo", 1.0)):
        r = row(runs, loss, alpha)
        assert r["kl"] > 0.1 and r["kl_exact"] > 0.1, (loss, r["kl"], r["kl_exact"])


def test_eval_kl_is_policy_to_sft_recomputed_from_the_saved_samples(runs) -> None:
    r = row(runs, "dpo")
    samples = json.loads((eval_dir(runs, r["eval_key"]) / "samples.json").read_text())
    policy, sft = load_model(runs["train"]["dpo"]), load_model(runs["sft"])
    k3, exact, reverse = [], [], []
    for s in samples:
        lp = token_logprobs(policy, s["prompt_ids"], s["response_ids"])
        lq = token_logprobs(sft, s["prompt_ids"], s["response_ids"])
        picked = torch.arange(len(s["response_ids"])), torch.tensor(s["response_ids"])
        rho = float(lq[picked].sum() - lp[picked].sum())  # log pi_SFT - log pi, on y ~ pi
        k3.append(math.expm1(rho) - rho)
        exact.append(float((lp.exp() * (lp - lq)).sum()))
        reverse.append(float((lq.exp() * (lq - lp)).sum()))
    assert r["kl"] == pytest.approx(np.mean(k3), rel=1e-4)
    assert r["kl_exact"] == pytest.approx(np.mean(exact), rel=1e-4)
    # The two directions differ here, so the check above tells them apart.
    assert abs(np.mean(reverse) - np.mean(exact)) > 1e-2 * np.mean(exact)


def batch_offsets(runs: dict, alpha: float, batch: int = 16) -> list[np.ndarray]:
    pairs = np.load(runs["pairs"] / "pairs.npz")
    offsets = alpha * np.log(pairs["score_chosen"] - pairs["score_rejected"])
    return [offsets[i : i + batch] for i in range(0, len(offsets), batch)]


def test_pairs_hold_the_scores_of_their_responses(runs) -> None:
    pairs = np.load(runs["pairs"] / "pairs.npz")
    s = json.loads((runs["samples"] / "samples.json").read_text())
    for i in range(len(pairs["prompt"])):
        p, c, r = (int(pairs[k][i]) for k in ("prompt", "chosen", "rejected"))
        pc, pr = keyword_p(s["texts"][p][c]), keyword_p(s["texts"][p][r])
        assert pc > pr
        # The training score: 1 + p when the scorer says positive (p >= 0.5), else p.
        for p_, score in ((pc, pairs["score_chosen"][i]), (pr, pairs["score_rejected"][i])):
            assert score == pytest.approx(1 + p_ if p_ >= 0.5 else p_, abs=1e-12)


def test_step_zero_loss_is_log2_for_dpo_and_softplus_offset_for_odpo(runs) -> None:
    dpo = pd.read_csv(runs["train"]["dpo"] / "train_log.csv")
    assert dpo["train/loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-5)
    odpo = pd.read_csv(runs["train"]["odpo"] / "train_log.csv")
    first = batch_offsets(runs, 1.0)[0]
    # margin 0 at step 0: -log sigmoid(0 - offset) = softplus(offset)
    expected = float(np.mean(np.logaddexp(0, first)))
    assert odpo["train/loss"].iloc[0] == pytest.approx(expected, abs=1e-5)
    assert abs(expected - math.log(2)) > 0.05  # the offset visibly changes the loss


def test_logged_offset_is_alpha_f_over_each_batch(runs) -> None:
    log = pd.read_csv(runs["train"]["odpo"] / "train_log.csv")
    expected = [float(b.mean()) for b in batch_offsets(runs, 1.0)]
    assert len(log) == len(expected)
    np.testing.assert_allclose(log["train/offset"], expected, rtol=1e-5, atol=1e-6)
    assert (pd.read_csv(runs["train"]["dpo"] / "train_log.csv")["train/offset"] == 0).all()


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(next((path / "model").glob("*.safetensors"))))


def test_odpo_with_alpha_zero_trains_exactly_dpo_and_alpha_one_does_not(runs) -> None:
    dpo, a0, a1 = (weights(runs["train"][k]) for k in ("dpo", "odpo_a0", "odpo"))
    assert dpo.keys() == a0.keys() == a1.keys()
    assert all(torch.equal(dpo[k], a0[k]) for k in dpo)
    assert not all(torch.equal(dpo[k], a1[k]) for k in dpo)


def test_larger_beta_stays_closer_to_sft(runs) -> None:
    small, large = row(runs, "dpo", beta=BETA), row(runs, "dpo", beta=1.0)
    assert large["kl_exact"] < small["kl_exact"]


def test_evaluation_prompts_are_held_out(runs) -> None:
    (prompts,) = stage_dir(runs["cache"], "prompts")
    (data,) = stage_dir(runs["cache"], "data")

    def texts(path: Path) -> Counter:
        return Counter(json.loads(line)["text"] for line in path.read_text().splitlines())

    sampling, evaluation = (
        texts(prompts / "sample_prompts.jsonl"),
        texts(prompts / "eval_prompts.jsonl"),
    )
    assert sum(evaluation.values()) == 30 and sum(sampling.values()) == 30
    # Distinct held-out rows (the fixture's templated texts may repeat, so count them):
    # no row serves as both a sampling and an evaluation prompt, none comes from training.
    held_out = texts(data / "test.jsonl")
    assert not (sampling + evaluation) - held_out
