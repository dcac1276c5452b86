"""LoRA adapters through ``peft`` (``model.lora``, conf/model/).

- SFT trains adapters on the loaded model and merges them in: the SFT model is a plain
  transformers folder, as every stage expects.
- Preference training puts fresh adapters on the SFT model. Their second matrix starts at
  zero, so the policy starts equal to the SFT model, and the reference is that same model
  with its adapters disabled (``Reference``): one copy in memory. The trained policy
  saved is the adapter alone (a few MB), with the relative path of the SFT folder it sits
  on (``adapter_base.json``); loading that folder puts the adapter back on its base.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from pipeline.infra.errors import ConfigError

BASE_FILE = "adapter_base.json"
# peft 0.21 asks transformers 5.23 a deprecated question at every wrap: noise in every run's log.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def spec(lora_cfg) -> dict | None:
    """The adapter settings as plain values (what enters the cache keys), or None for full
    fine-tuning (``model.lora=null`` or rank ``r: 0``)."""
    if not lora_cfg:
        return None
    if not hasattr(lora_cfg, "get"):
        raise ConfigError(
            f"model.lora={lora_cfg!r}: null (full fine-tuning) or {{r, alpha, dropout, "
            "target_modules}"
        )
    if not int(lora_cfg.get("r", 16)):
        return None
    targets = lora_cfg.get("target_modules", "all-linear")
    return {
        "r": int(lora_cfg.get("r", 16)),
        "alpha": float(lora_cfg.get("alpha", 32)),
        "dropout": float(lora_cfg.get("dropout", 0.0)),
        "target_modules": targets if isinstance(targets, str) else list(targets),
    }


def attach(model: torch.nn.Module, settings: dict, seed: int = 0) -> torch.nn.Module:
    """``model`` with fresh adapters (only they train). Seeded: the first matrices' random
    start is part of what a run's key fixes."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=settings["target_modules"],
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # target modules the architecture does not have
        raise ConfigError(f"model.lora.target_modules: {e}") from None


def frozen_in_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """The frozen weights of the adapted linear layers stored in bfloat16, for training
    under bf16 autocast: autocast casts a float32 weight to bfloat16 at every product
    (a tenth of a SmolLM2 step went to those copies), and the cast it would make is the
    weight stored here, so every product, value and gradient is the same. The adapters,
    norms and embeddings (the tied head) stay float32."""
    for name, module in core(model).named_modules():
        if name.endswith(".base_layer") and isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
    return model


def for_training(
    model: torch.nn.Module, settings: dict, seed: int, precision: str, world: int = 1
) -> torch.nn.Module:
    """``model`` with fresh adapters, as a training run holds it: under bf16 in one
    process the frozen weights are stored in bfloat16 (``frozen_in_bf16``; FSDP flattens
    one dtype, so a launch keeps them float32). The train stage and the bench share it,
    so the bench times the step the pipeline takes."""
    policy = attach(model, settings, seed)
    if precision == "bf16" and world == 1:
        policy = frozen_in_bf16(policy)
    return policy


def is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")


def core(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft wrapper (its layers carry the adapters)."""
    return model.get_base_model() if is_peft(model) else model


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """The adapters folded into the weights: a plain model (SFT saves this)."""
    return model.merge_and_unload() if is_peft(model) else model


def save(model: torch.nn.Module, directory: Path, base: Path, state: dict | None = None) -> None:
    """The adapter alone (peft's file layout, which ``load`` reads), and where its base
    model lies relative to it. ``state``: the model's full state when it is not the
    model's own (gathered from the shards of an FSDP launch)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    adapter = get_peft_model_state_dict(model, state_dict=state)
    adapter = {k: v.detach().cpu().contiguous() for k, v in adapter.items()}
    save_file(adapter, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = model.peft_config["default"]
    config.inference_mode = True
    config.save_pretrained(str(directory))
    rel = os.path.relpath(Path(base).resolve(), directory.resolve())
    (directory / BASE_FILE).write_text(json.dumps({"base": rel}) + "\n")


def is_adapter(path: str | Path) -> bool:
    return (Path(str(path)) / BASE_FILE).is_file()


def base_of(path: str | Path) -> Path:
    rel = json.loads((Path(path) / BASE_FILE).read_text())["base"]
    base = (Path(path) / rel).resolve()
    if not base.is_dir():
        raise ConfigError(f"the adapter in {path} sits on {base}, which is gone")
    return base


def load(base: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """The saved adapter on ``base``, for inference."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(path), is_trainable=False).eval()


class Reference(torch.nn.Module):
    """The SFT model seen through a LoRA policy: the same modules with the adapters off."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.config = policy.config

    def forward(self, *args, **kwargs):
        with self.policy.disable_adapter():
            return self.policy(*args, **kwargs)

    def off(self):
        """A context in which ``policy`` computes as the SFT model (``models.sequence_logps``)."""
        return self.policy.disable_adapter()


def reference_for(policy: torch.nn.Module, load_sft) -> torch.nn.Module:
    """The reference model for ``policy``: its adapter-disabled self under LoRA, else the
    SFT model ``load_sft()`` loads (a second copy)."""
    return Reference(policy) if is_peft(policy) else load_sft()


def trainable_names(model: torch.nn.Module) -> set[str] | None:
    """The state-dict names of the trained parameters when some are frozen (LoRA), else
    None (every parameter trains: checkpoints hold the whole model, as before)."""
    params = dict(model.named_parameters())
    frozen = [n for n, p in params.items() if not p.requires_grad]
    return {n for n, p in params.items() if p.requires_grad} if frozen else None
