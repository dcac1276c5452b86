"""What every benchmark trains on: random-weight GPT-2 models built from a config (no
hub), synthetic token-id sample sets shaped like the pipeline's, and the run config
``train_pairs`` reads, composed from ``conf/`` so it follows the pipeline's defaults.

Nothing here reads the cache: every figure is measured on data made from a fixed seed.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline import PROJECT_ROOT
from pipeline.math import pairing as pairs_lib

BOS = EOS = PAD = 0  # models.small_gpt2 uses one special token for all three


@dataclass(frozen=True)
class ModelSpec:
    """A GPT-2 architecture; ``name`` labels it in the report."""

    name: str
    vocab_size: int
    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int = 64


@dataclass(frozen=True)
class DataSpec:
    """A sample set like the sampling stage writes: ``n_prompts`` prompts of BOS plus
    ``prompt_tokens`` tokens, ``n_samples`` responses each. A response ends with EOS
    after a uniform 1..max_new_tokens-1 tokens with probability ``p_eos`` and otherwise
    runs to ``max_new_tokens`` tokens without one (the embedded SFT model's samples end
    early about 30% of the time)."""

    n_prompts: int
    n_samples: int = 6
    prompt_tokens: int = 4
    max_new_tokens: int = 24
    p_eos: float = 0.3


def build_model(spec: ModelSpec, seed: int) -> torch.nn.Module:
    """A random-weight GPT-2 of ``spec``, dropout off, fp32, in train mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=spec.vocab_size,
        n_positions=spec.n_positions,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).float().train()


def clone(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy with the same weights (each timed run starts from these)."""
    return copy.deepcopy(model).train()


def n_params(model: torch.nn.Module) -> int:
    """Distinct parameters (GPT-2 ties the output layer to the token embedding)."""
    return sum(p.numel() for p in model.parameters())


def make_samples(spec: ModelSpec, data: DataSpec, seed: int) -> dict:
    """``{"prompts": [[ids]], "responses": [[[ids]] per prompt]}`` as ``sample.load``
    returns it. Token ids are uniform over 1..vocab-1 (0 is BOS/EOS/PAD)."""
    rng = np.random.default_rng(seed)
    high = spec.vocab_size
    prompts = [
        [BOS, *rng.integers(1, high, data.prompt_tokens).tolist()] for _ in range(data.n_prompts)
    ]
    responses = []
    for _ in range(data.n_prompts):
        group = []
        for _ in range(data.n_samples):
            if rng.random() < data.p_eos:
                body = rng.integers(1, high, int(rng.integers(1, data.max_new_tokens))).tolist()
                group.append([*body, EOS])
            else:
                group.append(rng.integers(1, high, data.max_new_tokens).tolist())
        responses.append(group)
    return {"prompts": prompts, "responses": responses}


def make_pairs(samples: dict, n_pairs: int, seed: int) -> dict:
    """``n_pairs`` pairs as the pairs stage makes them (every pair of a prompt's
    responses, the higher random score chosen, a seeded subsample in seeded order)."""
    rng = np.random.default_rng(seed + 1)
    n_prompts, n_samples = len(samples["prompts"]), len(samples["responses"][0])
    scores = rng.uniform(0.01, 0.99, (n_prompts, n_samples))
    chosen = pairs_lib.subsample(pairs_lib.all_pairs(scores), n_pairs, seed)
    prompt, win, lose = chosen[:, 0], chosen[:, 1], chosen[:, 2]
    return {
        "prompt": prompt,
        "chosen": win,
        "rejected": lose,
        "score_chosen": scores[prompt, win],
        "score_rejected": scores[prompt, lose],
    }


def pair_lists(samples: dict, p: dict) -> tuple[list, list, list]:
    """(prompts, chosen, rejected) token-id lists, one entry per pair, in order."""
    prompts = [samples["prompts"][i] for i in p["prompt"]]
    chosen = [samples["responses"][i][j] for i, j in zip(p["prompt"], p["chosen"], strict=True)]
    rejected = [samples["responses"][i][j] for i, j in zip(p["prompt"], p["rejected"], strict=True)]
    return prompts, chosen, rejected


def used_responses(samples: dict, p: dict) -> tuple[list, list, list[tuple[int, int]]]:
    """The distinct (prompt, sample) responses that the pairs use: what our
    reference stage would have to score for exactly these pairs."""
    cells = sorted(
        set(zip(p["prompt"].tolist(), p["chosen"].tolist(), strict=True))
        | set(zip(p["prompt"].tolist(), p["rejected"].tolist(), strict=True))
    )
    prompts = [samples["prompts"][i] for i, _ in cells]
    responses = [samples["responses"][i][j] for i, j in cells]
    return prompts, responses, cells


def compose_cfg(scale: str, overrides: list[str] | None = None) -> DictConfig:
    """The pipeline's own config for one DPO run at ``scale`` (embedded or micro),
    device cpu, W&B off: what ``train_pairs`` reads comes from ``conf/``."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"scale={scale}",
                "loss=dpo",
                "device=cpu",
                "wandb=disabled",
                *(overrides or []),
            ],
        )
    return cfg


def run_cfg(base: DictConfig, seed: int = 0) -> DictConfig:
    """A copy of ``base`` to hand one ``train_pairs`` call."""
    cfg = copy.deepcopy(base)
    OmegaConf.update(cfg, "seed", seed)
    return cfg


def spec_dict(spec: ModelSpec | DataSpec) -> dict:
    return asdict(spec)
