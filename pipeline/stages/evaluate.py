"""Stage 8, evaluate: sample from a model on held-out prompts, then the task's metric
(the scorer's mean probability: p(positive) for sentiment, p(toxic) for toxicity, and any
per-sample extras the task adds) and KL(pi || pi_SFT) on those samples.

KL is reported two ways, summed over response tokens only:
- ``kl``: the k3 estimator exp(rho) - 1 - rho with rho = log pi_SFT(y|x) - log pi(y|x);
- ``kl_exact``: the exact KL between the two next-token distributions at every
  sampled position, summed (lower variance, same expectation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline import kl, models, scorers, tasks
from pipeline import precision as precisions
from pipeline.cache import Artifact, Cache, atomic_write_json
from pipeline.io import read_jsonl
from pipeline.stages import sample
from pipeline.stages.score import checked_probabilities

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1


@torch.no_grad()
def kl_to_reference(
    policy, reference, prompts, responses, pad_id: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (k3, exact) KL estimates, each shape (n,)."""
    k3, exact = [], []
    for i in range(0, len(prompts), batch_size):
        pr, rs = prompts[i : i + batch_size], responses[i : i + batch_size]
        pol_lp, targets, mask = models.response_token_logprobs(policy, pr, rs, pad_id)
        ref_lp, _, _ = models.response_token_logprobs(reference, pr, rs, pad_id)
        pick = targets.unsqueeze(-1)
        pol_seq = (torch.gather(pol_lp, 2, pick).squeeze(-1) * mask).sum(-1)
        ref_seq = (torch.gather(ref_lp, 2, pick).squeeze(-1) * mask).sum(-1)
        k3.append(kl.k3_kl(pol_seq, ref_seq).cpu())
        exact.append(kl.exact_token_kl(pol_lp, ref_lp, mask).cpu())
    return torch.cat(k3).double().numpy(), torch.cat(exact).double().numpy()


def params(cfg: DictConfig) -> dict:
    """Sampling for evaluation is always ancestral (temperature 1, top-p 1): the KL
    estimators need samples from pi_theta itself. So of the sampling settings only
    the lengths and the batch size enter."""
    return {
        "eval": OmegaConf.to_container(cfg.scale.eval, resolve=True),
        "prompt_tokens": cfg.scale.sample.prompt_tokens,
        "max_new_tokens": cfg.scale.sample.max_new_tokens,
        "sample_batch_size": cfg.scale.sample.batch_size,
        **({"bucket": True} if cfg.scale.sample.get("bucket", False) else {}),
        **tasks.get(cfg).key_extras("evaluate"),
        **precisions.key(cfg),
    }


def run(
    cfg: DictConfig,
    cache: Cache,
    policy: Artifact,
    sft: Artifact,
    classifier: Artifact | None,
    prompts: Artifact,
) -> Artifact:
    """Evaluate ``policy`` (a train artifact, or the SFT artifact for the baseline);
    without a classifier (a task that names no scorer) there is no scorer metric."""
    eval_cfg, sample_cfg, task = cfg.scale.eval, cfg.scale.sample, tasks.get(cfg)

    def build(out: Path) -> dict:
        rows = read_jsonl(prompts / "eval_prompts.jsonl", required=("text",))
        texts = [r["text"] for r in rows]
        drawn = sample.generate(
            policy / "model",
            texts,
            sample_cfg,
            1,
            eval_cfg.seed,
            cfg.device,
            temperature=1.0,
            top_p=1.0,
            join=task.scored_text,
            precision=precisions.of(cfg),
        )
        prompt_ids, responses = drawn["prompts"], [r[0] for r in drawn["responses"]]
        per_sample = {}
        if classifier is not None:
            scorer = scorers.load(cfg.scorer, classifier.path, cfg.device)
            p = checked_probabilities(scorer.prob([t[0] for t in drawn["texts"]]), "evaluate")
            per_sample = {task.scorer_metric or task.metric: p, **task.sample_metrics(p)}
        tok = models.load_tokenizer(sft / "model")
        policy_model = models.load_model(policy / "model", cfg.device).eval()
        sft_model = models.load_model(sft / "model", cfg.device).eval()
        per_sample["kl"], per_sample["kl_exact"] = kl_to_reference(
            policy_model, sft_model, prompt_ids, responses, tok.pad_token_id, eval_cfg.batch_size
        )
        per_sample |= task.eval_extras(cfg, policy_model, sft_model, sft / "model", rows)
        metrics = {}
        for name, values in per_sample.items():
            metrics[name], metrics[f"{name}_se"] = kl.mean_and_se(
                torch.from_numpy(np.asarray(values))
            )
        metrics["n_eval"] = len(texts)
        metrics["response_tokens"] = float(np.mean([len(r) for r in responses]))
        atomic_write_json(out / "metrics.json", metrics)
        # The token ids too, so the reward and both KLs can be recomputed from this file.
        atomic_write_json(
            out / "samples.json",
            [
                {"text": t[0], "prompt_ids": p, "response_ids": r}
                for t, p, r in zip(drawn["texts"], prompt_ids, responses, strict=True)
            ],
        )
        return metrics

    inputs = [a for a in (policy, sft, classifier, prompts) if a is not None]
    return cache.stage("evaluate", params(cfg), inputs, build, version=VERSION)


def published(cfg: DictConfig, cache: Cache, inputs: list[Artifact]) -> bool:
    """Whether the evaluation ``run`` would make from ``inputs`` (policy, sft,
    classifier, prompts) is in the cache: its manifest is written last."""
    inputs = [a for a in inputs if a is not None]
    key = cache.key("evaluate", params(cfg), inputs, version=VERSION)
    return (cache.root / "evaluate" / key / "manifest.json").is_file()


def load(artifact: Artifact) -> dict:
    return json.loads((artifact / "metrics.json").read_text())
