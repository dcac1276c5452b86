"""Seeded bugs for ``make mutants``: each is one small edit a tired engineer could
make, which leaves the pipeline running to the end with a plausible table. The suite
must fail for every one of them.

A mutant is (name, file, the exact text it replaces, the text it puts instead, why it
matters). The text must occur exactly once in the file, so a mutant that no longer
applies to the code is reported as stale instead of silently passing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    why: str


MUTANTS = [
    Mutant(
        "train-offset-dropped",
        "pipeline/modeling/preference_objective.py",
        "            beta=self.beta,\n            offset=offset,\n",
        "            beta=self.beta,\n",
        "ODPO silently trains as DPO; the offset is still computed, validated and logged",
    ),
    Mutant(
        "train-chosen-rejected-swapped",
        "pipeline/modeling/preference_objective.py",
        "policy_chosen_logps, policy_rejected_logps = logps[:half], logps[half:]",
        "policy_rejected_logps, policy_chosen_logps = logps[:half], logps[half:]",
        "the policy is pushed towards the lower-scored responses",
    ),
    Mutant(
        "train-reference-swapped",
        "pipeline/modeling/preference_objective.py",
        "reference_chosen_logps = self.reference_logps[prompt_ids, chosen_ids]\n"
        "        reference_rejected_logps = self.reference_logps[prompt_ids, rejected_ids]\n",
        "reference_chosen_logps = self.reference_logps[prompt_ids, rejected_ids]\n"
        "        reference_rejected_logps = self.reference_logps[prompt_ids, chosen_ids]\n",
        "the reference log-probs of chosen and rejected are crossed",
    ),
    Mutant(
        "train-zero-grad-after-backward",
        "pipeline/modeling/preference_training.py",
        "        self.optimizer.zero_grad(set_to_none=True)\n"
        "        batch_loss, outputs, weights = self.accumulate_gradients(pair_indices)\n",
        "        batch_loss, outputs, weights = self.accumulate_gradients(pair_indices)\n"
        "        self.optimizer.zero_grad(set_to_none=True)\n",
        "gradients are cleared before the step: training runs and changes nothing",
    ),
    Mutant(
        "eval-kl-policy-reference-swapped",
        "pipeline/stages/evaluate.py",
        "            policy_model, sft_model, prompt_ids, responses, tok.pad_token_id",
        "            sft_model, policy_model, prompt_ids, responses, tok.pad_token_id",
        "the evaluation reports KL(SFT || policy) on policy samples",
    ),
    Mutant(
        "eval-reward-inverted",
        "pipeline/stages/evaluate.py",
        'scorer.prob([t[0] for t in drawn["texts"]]), "evaluate"',
        '1 - scorer.prob([t[0] for t in drawn["texts"]]), "evaluate"',
        "the evaluation reward is 1 - p instead of p",
    ),
    Mutant(
        "sft-lr-not-in-key",
        "pipeline/stages/sft.py",
        "        sft_params.pop(name, None)\n",
        '        sft_params.pop(name, None)\n    sft_params.pop("lr", None)\n',
        "a changed scale.sft.lr silently reuses the old SFT model",
    ),
    Mutant(
        "sample-temperature-not-in-key",
        "pipeline/stages/sample.py",
        "    sample = OmegaConf.to_container(cfg.scale.sample, resolve=True)\n",
        "    sample = OmegaConf.to_container(cfg.scale.sample, resolve=True)\n"
        '    sample.pop("temperature")\n',
        "a changed sampling temperature silently reuses the old sample set",
    ),
    Mutant(
        "data-heldout-fraction-not-in-key",
        "pipeline/stages/data.py",
        '    params.pop("download_dir", None)',
        '    params.pop("download_dir", None)\n    params.pop("heldout_fraction", None)',
        "a changed held-out share silently reuses the old splits",
    ),
    Mutant(
        "sample-seed-ignored",
        "pipeline/modeling/inference.py",
        "        generator_seed=seed,",
        "        generator_seed=0,",
        "every seed gets the same sample set",
    ),
    Mutant(
        "pairs-winner-inverted",
        "pipeline/math/pairing.py",
        "first_wins = s[ii] > s[jj]",
        "first_wins = s[ii] < s[jj]",
        "the lower-scored response of each pair is called chosen",
    ),
    Mutant(
        "offset-alpha-ignored",
        "pipeline/math/offsets.py",
        "offset = alpha * OFFSETS[name](chosen.double(), rejected.double())",
        "offset = OFFSETS[name](chosen.double(), rejected.double())",
        "alpha has no effect; alpha = 0 no longer gives DPO",
    ),
    Mutant(
        "training-score-negative-branch",
        "pipeline/math/rewards.py",
        "return np.where(says_positive, 1.0 + p, 1.0 - (1.0 - p))",
        "return np.where(says_positive, 1.0 + p, 1.0 - p)",
        "negative calls are ranked upside down (1 - p instead of 1 - p(negative))",
    ),
    Mutant(
        "response-mask-off-by-one",
        "pipeline/modeling/batching.py",
        "    response = ((cols >= starts) & (cols < ends)).float()",
        "    response = ((cols >= starts - 1) & (cols < ends)).float()",
        "log-probs and KL include the last prompt token's prediction",
    ),
    Mutant(
        "eval-prompts-overlap-sampling",
        "pipeline/tasks/base.py",
        "[heldout[i] for i in chosen[n_sample:]]",
        "[heldout[i] for i in chosen[:n_eval]]",
        "evaluation prompts are drawn from the prompts the policy was trained on",
    ),
]
