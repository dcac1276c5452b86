"""Stage 4, sample: several completions per prompt from the SFT model.

Each seed gives a different sample set (the seed is part of the stage key).
Prompts are the first ``prompt_tokens`` tokens of each prompt text, after a BOS token.
``texts`` holds what the scorer reads: prompt + response, or the response alone, as the
task says (``Task.scored``). A task with its own responses (``task=custom``) brings them
instead of sampling (``Task.given_samples``).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache, atomic_write_json
from pipeline.infra.io import read_jsonl
from pipeline.modeling import inference
from pipeline.modeling import precision as precisions

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1


def params(cfg: DictConfig) -> dict:
    """Every sampling setting and the seed (and what the scorer reads, when not the
    default). A task that brings its own responses is keyed by those instead."""
    task = tasks.get(cfg)
    given = task.given_samples_params(cfg)
    if given is not None:
        return given
    sample = OmegaConf.to_container(cfg.scale.sample, resolve=True)
    if not sample.get("bucket", False):  # unbucketed: the key it had before the option
        sample.pop("bucket", None)
    return {"sample": sample, "seed": cfg.seed, **task.key_extras("sample"), **precisions.key(cfg)}


def run(cfg: DictConfig, cache: Cache, sft: Artifact, prompts: Artifact) -> Artifact:
    sample_cfg, task = cfg.scale.sample, tasks.get(cfg)

    def build(out: Path) -> dict:
        rows = read_jsonl(prompts / "sample_prompts.jsonl", required=("text",))
        given = task.given_samples(cfg, sft / "model", rows)
        if given is not None:
            atomic_write_json(out / "samples.json", given)
            return {"n_prompts": len(rows), "given": True, **given.get("truncation", {})}
        texts = [r["text"] for r in rows]
        stats: dict = {}
        samples = inference.generate(
            sft / "model", texts, sample_cfg, sample_cfg.n_samples, cfg.seed, cfg.device,
            join=task.scored_text, precision=precisions.of(cfg), stats=stats,
            prompt_ids=task.prompt_ids,
        )  # fmt: skip
        atomic_write_json(out / "samples.json", samples)
        rate = stats["real_tokens"] / max(stats["seconds"], 1e-9)
        print(
            f"[sample] seed {cfg.seed}: {len(texts)} prompts x {sample_cfg.n_samples} samples, "
            f"{stats['real_tokens']} tokens in {stats['seconds']:.1f}s ({rate:,.0f} tokens/s, "
            f"{stats['pad_share']:.0%} of decoded positions padding)"
        )
        return {"n_prompts": len(texts), "n_samples": sample_cfg.n_samples, **stats}

    return cache.stage("sample", params(cfg), [sft, prompts], build, version=VERSION)
