"""Stage 4, sample: several completions per prompt from the SFT model.

Each seed gives a different sample set (the seed is part of the stage key).
Prompts are the first ``prompt_tokens`` tokens of each review, after a BOS token.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import models
from pipeline.cache import Artifact, Cache, atomic_write_json
from pipeline.io import read_jsonl
from pipeline.seeding import set_seed

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1


def make_prompts(tok, texts: list[str], prompt_tokens: int) -> list[list[int]]:
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    return [[models.bos_id(tok), *t[:prompt_tokens]] for t in ids]


def generate(
    model_dir: Path,
    prompt_texts: list[str],
    sample_cfg: DictConfig,
    n_samples: int,
    seed: int,
    device: str,
    temperature: float | None = None,
    top_p: float | None = None,
) -> dict:
    """Sample and package prompts, response ids and decoded texts (prompt + response).

    ``temperature``/``top_p`` default to the sample config's values."""
    set_seed(seed)
    tok = models.load_tokenizer(model_dir)
    model = models.load_model(model_dir, device)
    prompts = make_prompts(tok, prompt_texts, sample_cfg.prompt_tokens)
    responses = models.sample(
        model,
        prompts,
        n_samples=n_samples,
        max_new_tokens=sample_cfg.max_new_tokens,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        temperature=sample_cfg.temperature if temperature is None else temperature,
        top_p=sample_cfg.top_p if top_p is None else top_p,
        batch_size=sample_cfg.batch_size,
        generator_seed=seed,
        progress=True,
    )
    prompt_text = tok.batch_decode(prompts, skip_special_tokens=True)
    texts = [
        [prompt_text[i] + tok.decode(r, skip_special_tokens=True) for r in rs]
        for i, rs in enumerate(responses)
    ]
    return {"prompts": prompts, "responses": responses, "texts": texts}


def load(artifact: Artifact) -> dict:
    return json.loads((artifact / "samples.json").read_text())


def run(cfg: DictConfig, cache: Cache, sft: Artifact, prompts: Artifact) -> Artifact:
    sample_cfg = cfg.scale.sample
    params = {"sample": OmegaConf.to_container(sample_cfg), "seed": cfg.seed}

    def build(out: Path) -> dict:
        texts = [
            r["text"] for r in read_jsonl(prompts / "sample_prompts.jsonl", required=("text",))
        ]
        samples = generate(
            sft / "model", texts, sample_cfg, sample_cfg.n_samples, cfg.seed, cfg.device
        )
        atomic_write_json(out / "samples.json", samples)
        n = sum(len(r) for rs in samples["responses"] for r in rs)
        print(
            f"[sample] seed {cfg.seed}: {len(texts)} prompts x {sample_cfg.n_samples} samples, {n} tokens"
        )
        return {"n_prompts": len(texts), "n_samples": sample_cfg.n_samples}

    return cache.stage("sample", params, [sft, prompts], build, version=VERSION)
