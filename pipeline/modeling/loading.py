"""Models and tokenizers: trained from scratch (a small GPT-2, a byte-level BPE) or
loaded from a folder or the hub, with what every stage needs settled once: SDPA
attention, the fused GELU, a pad token, no dropout."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from pipeline.infra.errors import ConfigError, first_line
from pipeline.modeling import lora, sequences

SPECIAL = "<|endoftext|>"

# Models are loaded once per stage of every run of a sweep: one "Loading weights"
# bar per load would drown the stage progress bars.
hf_logging.disable_progress_bar()


def train_bpe_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``, GPT-2 style, one special token."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[SPECIAL], show_progress=False
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=SPECIAL, eos_token=SPECIAL, pad_token=SPECIAL
    )


def bos_id(tok: PreTrainedTokenizerFast) -> int:
    """The token that starts a plain sequence: BOS, or EOS for tokenizers without one."""
    return sequences.start_id(tok)


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Preference training compares policy and reference log-probs, so both must be
    deterministic: pretrained checkpoints (gpt2-large: 0.1) ship with dropout on."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def small_gpt2(
    vocab_size: int, n_layer: int, n_embd: int, n_head: int, n_positions: int
) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function=FUSED_GELU,
    )
    return GPT2LMHeadModel(config)


# GPT-2, GPT-Neo and GPT-J ship "gelu_new", the tanh approximation written as seven
# elementwise tensor ops; torch's gelu(approximate="tanh") is the same formula in one
# kernel (forward and backward), which cuts a tenth off a CPU training step.
FUSED_GELU = "gelu_pytorch_tanh"


# The attention kernel an SFT model was trained with, recorded in its config.json when it
# is not SDPA (``model.attention``), so every stage that loads it (and every adapter on
# top of it) computes with the same kernel. A config without it means SDPA.
ATTENTION_KEY = "pipeline_attention"
ATTENTIONS = ("sdpa", "eager")


def load_model(
    path: str | Path, device: str = "cpu", dtype: str = "float32", attention: str | None = None
) -> torch.nn.Module:
    """A causal LM with SDPA attention (or the kernel its config records, or
    ``attention`` when given) and the fused GELU (same function as gelu_new). A folder
    that holds a LoRA adapter (a trained policy) loads its base model, the SFT model it
    records, with the adapter on top (``pipeline.modeling.lora``)."""
    if lora.is_adapter(path):
        return lora.load(load_model(lora.base_of(path), device, dtype, attention), path)
    try:
        config = AutoConfig.from_pretrained(str(path))
        if getattr(config, "activation_function", None) == "gelu_new":
            config.activation_function = FUSED_GELU
        kernel = attention or getattr(config, ATTENTION_KEY, None) or "sdpa"
        model = AutoModelForCausalLM.from_pretrained(
            str(path), config=config, dtype=getattr(torch, dtype), attn_implementation=kernel
        )
    except OSError as e:
        raise ConfigError(f"could not load model {str(path)!r}: {first_line(e)}") from None
    except ValueError as e:  # an architecture without SDPA: transformers' own choice
        if "sdpa" not in str(e).lower():
            raise
        model = AutoModelForCausalLM.from_pretrained(
            str(path), config=config, dtype=getattr(torch, dtype)
        )
    return model.to(device)


def record_attention(model: torch.nn.Module, attention: str) -> None:
    """Note a non-SDPA kernel in ``model``'s config, so its saved folder loads with it."""
    if attention != "sdpa":
        setattr(model.config, ATTENTION_KEY, attention)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except OSError as e:
        raise ConfigError(f"could not load tokenizer {str(path)!r}: {first_line(e)}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    fmt = sequences.read(path) if Path(str(path)).is_dir() else None
    if fmt is not None:
        sequences.attach(tok, fmt)
    return tok


def save_tokenizer(tok, directory: str | Path) -> None:
    """The tokenizer and its sequence format (``sequences``), as ``load_tokenizer`` reads them."""
    tok.save_pretrained(str(directory))
    sequences.save(tok, Path(directory), sequences.of(tok))


def max_positions(model_dir: Path) -> int | None:
    """The longest sequence a saved model takes (None when its config does not say)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(config.get(name), int):
            return config[name]
    return None
