"""How much disk a run or a sweep needs in the cache, checked before it starts.

At the paper scale a trained policy is about 3 GB (GPT-2 Large in fp32), so a
168-run grid that kept every policy would need about 500 GB. The estimate counts:
- the SFT model, kept (every run starts from it);
- one trained policy per run when ``keep_weights`` is true, else one per worker at
  a time (it is deleted once its evaluation is published);
- a resumable checkpoint per worker at a time (model plus optimizer state);
- with ``scale.train.share_prefix``, one kept loop state per run (model plus optimizer
  state, ``checkpoint.PrefixStore``): a longer run of the sweep may resume from it;
- each seed's sample set and the evaluations (token ids and texts, small).
Sizes come from the model's architecture, built on PyTorch's ``meta`` device (no
memory, no download): parameters x 4 bytes, as the stages save fp32 weights. Under LoRA
(``model.lora``) a trained policy, its checkpoint and its prefix states hold the adapters
alone (``checkpoint.model_state``), so those count the adapters' parameters; the SFT
model is a whole model still.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from pipeline.infra.errors import ConfigError

GB = 1e9
# Optimizer state per parameter, in copies of the weights (AdamW keeps two moments).
OPTIMIZER_COPIES = {"adamw": 2, "rmsprop": 1}
# A sampled token costs about this much in samples.json (its id and its share of the text).
BYTES_PER_TOKEN = 12


@dataclass(frozen=True)
class Estimate:
    sft: float
    policies: float
    checkpoints: float
    samples: float
    prefixes: float = 0.0

    @property
    def total(self) -> float:
        return self.sft + self.policies + self.checkpoints + self.samples + self.prefixes

    def describe(self) -> str:
        shared = f", shared prefix states {self.prefixes / GB:.2f}" if self.prefixes else ""
        return (
            f"{self.total / GB:.2f} GB (SFT model {self.sft / GB:.2f}, policies "
            f"{self.policies / GB:.2f}, checkpoints {self.checkpoints / GB:.2f}{shared}, "
            f"samples and evaluations {self.samples / GB:.2f})"
        )


def _meta_model(cfg: DictConfig):
    """The policy's architecture on the ``meta`` device (shapes only: no memory, no
    weights), or None if it cannot be read (a hub model not in the local cache offline)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    from pipeline.modeling.models import small_gpt2

    m = cfg.scale.model
    with torch.device("meta"):
        if (cfg.get("model") or {}).get("wheel"):
            # The wheel's model is converted at the first SFT, not before: its known shape.
            return AutoModelForCausalLM.from_config(LlamaConfig(**SMOLLM2_ARCHITECTURE))
        if not m.pretrained:
            return small_gpt2(m.vocab_size, m.n_layer, m.n_embd, m.n_head, m.n_positions)
        try:
            config = AutoConfig.from_pretrained(str(m.pretrained))
        except (OSError, ValueError):
            return None
        return AutoModelForCausalLM.from_config(config)


# SmolLM2-135M-Instruct (the one wheel model): 134,515,008 parameters, tied embeddings.
SMOLLM2_ARCHITECTURE = {
    "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "tie_word_embeddings": True,
}  # fmt: skip


def model_parameters(cfg: DictConfig) -> int | None:
    """The policy's parameter count from its architecture; None if it cannot be read."""
    model = _meta_model(cfg)
    return None if model is None else sum(p.numel() for p in model.parameters())


def adapter_parameters(model, settings: dict) -> int:
    """Parameters LoRA adds to ``model``: r x (in + out) per adapted linear layer (the
    layers named in ``target_modules``, or every linear layer but the output head for
    "all-linear", as peft reads them)."""
    import torch

    targets = settings["target_modules"]
    head = model.get_output_embeddings()
    total = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is head:
            continue
        if targets == "all-linear" or name.rsplit(".", 1)[-1] in set(targets):
            total += settings["r"] * (module.in_features + module.out_features)
    return total


def trained_parameters(cfg: DictConfig) -> int | None:
    """What a trained policy saves: the adapters under LoRA, else the whole model."""
    from pipeline.modeling import lora

    settings = lora.spec((cfg.get("model") or {}).get("lora"))
    model = _meta_model(cfg)
    if model is None:
        return None
    return (
        adapter_parameters(model, settings)
        if settings
        else sum(p.numel() for p in model.parameters())
    )


def estimate(
    cfg: DictConfig,
    n_runs: int,
    n_seeds: int = 1,
    workers: int = 1,
    n_params: int | None = None,
    n_trained: int | None = None,
) -> Estimate | None:
    """Bytes a sweep of ``n_runs`` training runs over ``n_seeds`` sample sets needs.
    ``n_trained``: parameters a policy saves (the adapters under LoRA; default
    ``n_params`` when that is given, else read from the config)."""
    if n_params is None:
        n_params, n_trained = model_parameters(cfg), trained_parameters(cfg)
    if n_params is None:
        return None
    model = 4.0 * n_params
    policy = 4.0 * (n_params if n_trained is None else n_trained)
    kept = n_runs if cfg.keep_weights else min(workers, n_runs)
    copies = 1 + OPTIMIZER_COPIES.get(str(cfg.scale.train.optimizer), 2)
    s, e = cfg.scale.sample, cfg.scale.eval
    tokens = s.prompt_tokens + 1 + s.max_new_tokens
    samples = n_seeds * s.n_prompts * s.n_samples * tokens * BYTES_PER_TOKEN
    evaluations = (n_runs + 1) * e.n_prompts * tokens * BYTES_PER_TOKEN
    # Each run keeps its state after its last full batch (the train stage shares none
    # under a warm-up by fraction, which differs between run lengths).
    t = cfg.scale.train
    shares = t.get("share_prefix", False) and t.get("warmup_fraction") is None
    return Estimate(
        sft=model,
        policies=kept * policy,
        checkpoints=min(workers, n_runs) * copies * policy,
        samples=float(samples + evaluations),
        prefixes=n_runs * copies * policy if shares else 0.0,
    )


def free_bytes(cfg: DictConfig) -> float:
    """Free space where the cache lives (``disk_free_gb`` overrides it, for tests)."""
    if cfg.get("disk_free_gb") is not None:
        return float(cfg.disk_free_gb) * GB
    path = Path(cfg.cache_dir)
    while not path.exists() and path != path.parent:
        path = path.parent
    return float(shutil.disk_usage(path).free)


def check(
    cfg: DictConfig, n_runs: int, n_seeds: int = 1, workers: int = 1, what: str = "run"
) -> None:
    """Print the estimate against the free space; refuse with one line when it cannot fit."""
    needed = estimate(cfg, n_runs, n_seeds, workers)
    free = free_bytes(cfg)
    if needed is None:
        print(
            f"[disk] the model size is unknown offline; {free / GB:.1f} GB free in {cfg.cache_dir}"
        )
        return
    print(
        f"[disk] this {what} needs about {needed.describe()}; {free / GB:.1f} GB free in {cfg.cache_dir}"
    )
    if needed.total > free:
        hint = "" if not cfg.keep_weights else "set keep_weights=false, "
        raise ConfigError(
            f"this {what} needs about {needed.total / GB:.2f} GB in {cfg.cache_dir} but only "
            f"{free / GB:.2f} GB is free ({hint}free space, or point cache_dir elsewhere)"
        )


def sweep_size(config: DictConfig) -> tuple[int, int, int]:
    """(training runs, seeds, parallel workers) of the multirun ``config`` describes:
    the product of its sweep lists (experiment file and command line, comma lists)."""
    lists: dict[str, list[str]] = {}
    params = config.hydra.sweeper.get("params") or {}
    for key, values in params.items():
        lists[str(key)] = [v.strip() for v in str(values).split(",")]
    for override in config.hydra.overrides.task:
        key, sep, values = str(override).partition("=")
        if sep and "," in values and not key.startswith(("hydra", "+", "~")):
            lists[key] = [v.strip() for v in values.split(",")]
    n_runs = 1
    for values in lists.values():
        n_runs *= len(values)
    n_seeds = len(lists.get("seed", [None]))
    workers = int(config.hydra.launcher.get("n_jobs") or 1)
    return n_runs, n_seeds, workers
