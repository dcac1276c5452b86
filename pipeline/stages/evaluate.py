"""Stage 8, evaluate: sample from a model on held-out prompts, then the task's metric
(the scorer's mean probability: p(positive) for sentiment, p(toxic) for toxicity, and any
per-sample extras the task adds) and KL(pi || pi_SFT) on those samples.

Two protocols (``eval.protocol``, conf/config.yaml):
- ``ours`` (default): samples from the policy's full distribution (top-k off), so the
  KL estimates below are of KL(pi_theta(y|x) || pi_SFT(y|x)), unbiased.
- ``authors``: samples with top-k 50, the default of the authors' transformers, and adds
  ``kl_with_prompt``: their quantity, set beside the paper's KL axis. Under top-k the
  samples are not drawn from pi_theta, so none of the three columns is then an unbiased
  estimate of the policy's KL; they are the paper's procedure, reproduced.

The columns (each with ``<name>_se``, the standard error over evaluation prompts):
- ``kl``: k3 = exp(rho) - 1 - rho, rho = log pi_SFT(y|x) - log pi(y|x), summed over
  response tokens;
- ``kl_exact``: the exact KL between the two next-token distributions at every sampled
  response position, summed (lower variance, same expectation as ``kl``);
- ``kl_with_prompt`` (``authors``, or ``eval.kl_with_prompt=true``): k3 with rho summed
  over prompt tokens too, as the authors' code did. With c = log pi_SFT(x) - log pi(x),
  its expectation is KL(y|x) + E[exp(c) - 1 - c]: biased upward when the policy moved on
  the prompt (``pipeline.math.kl``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache, atomic_write_json
from pipeline.infra.io import read_jsonl
from pipeline.math import kl
from pipeline.modeling import inference, lora, models
from pipeline.modeling import precision as precisions
from pipeline.scoring import scorers
from pipeline.stages import artifacts

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# What the authors' evaluation sampled with: the top-k default of their transformers.
AUTHORS_TOP_K = 50


@torch.no_grad()
def kl_to_reference(
    policy, reference, prompts, responses, pad_id: int, batch_size: int
) -> dict[str, np.ndarray]:
    """Per-sample KL estimates, each shape (n,): ``kl`` (k3 over response tokens),
    ``kl_exact`` (exact per-position KL over response tokens) and ``kl_with_prompt``
    (k3 over prompt and response tokens, the authors' sum: biased upward by
    E[exp(c) - 1 - c] when the policy moved on the prompt, see ``pipeline.math.kl``)."""
    out: dict[str, list] = {"kl": [], "kl_exact": [], "kl_with_prompt": []}
    for i in range(0, len(prompts), batch_size):
        pr, rs = prompts[i : i + batch_size], responses[i : i + batch_size]
        pol_lp, targets, mask, prompt_mask = models.response_token_logprobs(
            policy, pr, rs, pad_id, with_prompt_mask=True
        )
        ref_lp, _, _ = models.response_token_logprobs(reference, pr, rs, pad_id)
        pick = targets.unsqueeze(-1)
        pol_tok = torch.gather(pol_lp, 2, pick).squeeze(-1)
        ref_tok = torch.gather(ref_lp, 2, pick).squeeze(-1)
        pol_seq, ref_seq = (pol_tok * mask).sum(-1), (ref_tok * mask).sum(-1)
        pol_x, ref_x = (pol_tok * prompt_mask).sum(-1), (ref_tok * prompt_mask).sum(-1)
        out["kl"].append(kl.k3_kl(pol_seq, ref_seq).cpu())
        out["kl_exact"].append(kl.exact_token_kl(pol_lp, ref_lp, mask).cpu())
        out["kl_with_prompt"].append(kl.k3_kl(pol_seq + pol_x, ref_seq + ref_x).cpu())
    return {name: torch.cat(parts).double().numpy() for name, parts in out.items()}


def protocol(cfg: DictConfig) -> dict:
    """The evaluation protocol's settings (``eval.*``, conf/config.yaml): ``top_k`` for
    sampling (0: the full distribution) and whether ``kl_with_prompt`` is reported."""
    ev = cfg.get("eval") or {}
    authors = ev.get("protocol", "ours") == "authors"
    return {
        "top_k": AUTHORS_TOP_K if authors else 0,
        "kl_with_prompt": authors or bool(ev.get("kl_with_prompt", False)),
    }


def key_extras(cfg: DictConfig) -> dict:
    """The protocol's part of the key: nothing for the default (``ours``, no
    ``kl_with_prompt``), so every key made before protocols existed stays valid."""
    ev = cfg.get("eval") or {}
    out = {}
    if ev.get("protocol", "ours") != "ours":
        out["protocol"] = ev.protocol
    elif ev.get("kl_with_prompt", False):
        out["kl_with_prompt"] = True
    return out


def columns(cfg: DictConfig) -> list[str]:
    """The protocol's runs.csv columns beyond the task's and the KL ones every run has."""
    return ["kl_with_prompt", "kl_with_prompt_se"] if protocol(cfg)["kl_with_prompt"] else []


def params(cfg: DictConfig) -> dict:
    """Sampling for evaluation is ancestral (temperature 1, top-p 1): the KL estimators
    need samples from pi_theta itself. So of the sampling settings only the lengths and
    the batch size enter, plus the protocol when it is not ours (``eval.protocol``)."""
    return {
        "eval": OmegaConf.to_container(cfg.scale.eval, resolve=True),
        "prompt_tokens": cfg.scale.sample.prompt_tokens,
        "max_new_tokens": cfg.scale.sample.max_new_tokens,
        "sample_batch_size": cfg.scale.sample.batch_size,
        **({"bucket": True} if cfg.scale.sample.get("bucket", False) else {}),
        **tasks.get(cfg).key_extras("evaluate"),
        **precisions.key(cfg),
        **key_extras(cfg),
    }


def run(
    cfg: DictConfig,
    cache: Cache,
    policy: Artifact,
    sft: Artifact,
    classifier: Artifact | None,
    prompts: Artifact,
    heldout: Artifact | None = None,
) -> Artifact:
    """Evaluate ``policy`` (a train artifact, or the SFT one for the baseline); without a
    classifier (no scorer named) no scorer metric; ``heldout``: the SFT model's held-out values."""
    eval_cfg, sample_cfg, task = cfg.scale.eval, cfg.scale.sample, tasks.get(cfg)
    proto = protocol(cfg)

    def build(out: Path) -> dict:
        rows = read_jsonl(prompts / "eval_prompts.jsonl", required=("text",))
        texts = [r["text"] for r in rows]
        drawn = inference.generate(
            policy / "model",
            texts,
            sample_cfg,
            1,
            eval_cfg.seed,
            cfg.device,
            temperature=1.0,
            top_p=1.0,
            top_k=proto["top_k"],
            join=task.scored_text,
            precision=precisions.of(cfg),
            prompt_ids=task.prompt_ids,
        )
        prompt_ids, responses = drawn["prompts"], [r[0] for r in drawn["responses"]]
        per_sample = {}
        if classifier is not None:
            scorer = scorers.load(cfg.scorer, classifier.path, cfg.device)
            p = scorers.checked_probabilities(
                scorer.prob([t[0] for t in drawn["texts"]]), "evaluate"
            )
            per_sample = {task.scorer_metric or task.metric: p, **task.sample_metrics(p)}
        per_sample |= task.response_metrics(cfg, rows, [t[0] for t in drawn["texts"]], prompts.path)
        tok = models.load_tokenizer(sft / "model")
        policy_model = models.load_model(policy / "model", cfg.device).eval()
        # The SFT row's policy is the reference itself; under LoRA the reference is the
        # policy with its adapters off: either way one copy of the model in memory.
        sft_model = (
            policy_model
            if policy.path == sft.path
            else lora.reference_for(
                policy_model, lambda: models.load_model(sft / "model", cfg.device).eval()
            )
        )
        kls = kl_to_reference(
            policy_model, sft_model, prompt_ids, responses, tok.pad_token_id, eval_cfg.batch_size
        )
        if not proto["kl_with_prompt"]:
            kls.pop("kl_with_prompt")
        per_sample |= kls
        per_sample |= task.eval_extras(
            cfg, policy_model, sft_model, sft / "model", rows, artifacts.heldout(heldout)
        )
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

    inputs = [a for a in (policy, sft, classifier, prompts, heldout) if a is not None]
    return cache.stage("evaluate", params(cfg), inputs, build, version=VERSION)


def load(artifact: Artifact) -> dict:
    return json.loads((artifact / "metrics.json").read_text())
