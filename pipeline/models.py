"""Language-model helpers shared by the stages: build, load, sample, score.

Sequences are ``prompt + response``; every log-probability the pipeline uses is
summed over response tokens only (prompt and padding masked out).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from pipeline.errors import ConfigError, first_line

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
    """The token that starts every sequence: BOS, or EOS for tokenizers without one."""
    token = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if token is None:
        raise ConfigError(f"tokenizer {tok.name_or_path!r} has neither a BOS nor an EOS token")
    return token


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
    )
    return GPT2LMHeadModel(config)


def load_model(path: str | Path, device: str = "cpu", dtype: str = "float32") -> torch.nn.Module:
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
    except OSError as e:
        raise ConfigError(f"could not load model {str(path)!r}: {first_line(e)}") from None
    return model.to(device)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except OSError as e:
        raise ConfigError(f"could not load tokenizer {str(path)!r}: {first_line(e)}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def pad(
    seqs: list[list[int]], pad_id: int, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), both (B, longest): each sequence right-padded with ``pad_id`` (or
    left-padded, so that generation continues from every row's last real token)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, s in enumerate(seqs):
        cols = slice(width - len(s), width) if left else slice(0, len(s))
        ids[b, cols] = torch.tensor(s, dtype=torch.long)
        mask[b, cols] = 1
    return ids, mask


def join(
    prompts: list[list[int]], responses: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``prompt + response`` batch.

    Returns input_ids (B, T), attention_mask (B, T), and response_mask (B, T) that
    is 1 where the *target* token (position t) belongs to the response.
    """
    seqs = [p + r for p, r in zip(prompts, responses, strict=True)]
    input_ids, attention = pad(seqs, pad_id)
    response = torch.zeros(input_ids.shape, dtype=torch.float32)
    for b, (p, s) in enumerate(zip(prompts, seqs, strict=True)):
        response[b, len(p) : len(s)] = 1.0
    return input_ids, attention, response


def response_token_logprobs(
    model: torch.nn.Module, prompts: list[list[int]], responses: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full next-token log-softmax at every response position.

    Returns (log_probs (B, T-1, V), target_ids (B, T-1), mask (B, T-1)), where
    position t predicts token t+1 and mask marks response targets.
    """
    input_ids, attention, response = join(prompts, responses, pad_id)
    input_ids, attention = input_ids.to(_device(model)), attention.to(_device(model))
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
    return torch.log_softmax(logits, -1), input_ids[:, 1:], response[:, 1:].to(logits.device)


def sequence_logps(
    model: torch.nn.Module, prompts: list[list[int]], responses: list[list[int]], pad_id: int
) -> torch.Tensor:
    """log pi(response | prompt) summed over response tokens, shape (B,)."""
    log_probs, targets, mask = response_token_logprobs(model, prompts, responses, pad_id)
    picked = torch.gather(log_probs, 2, targets.unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    prompts: list[list[int]],
    n_samples: int,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 256,
    generator_seed: int = 0,
    progress: bool = False,
) -> list[list[list[int]]]:
    """``n_samples`` responses per prompt (token ids, cut after the first eos).

    Batched ancestral sampling with the model's KV cache via ``generate``; prompts
    are left-padded so that every row continues from its last real token.
    Returns responses[prompt][sample] -> list of token ids.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(generator_seed)
    model.eval()
    rows = [p for p in prompts for _ in range(n_samples)]
    out: list[list[int]] = []
    do_sample = temperature > 0
    batches = range(0, len(rows), batch_size)
    for start in tqdm(batches, desc="sampling", disable=not progress, leave=False):
        chunk = rows[start : start + batch_size]
        ids, mask = pad(chunk, pad_id, left=True)
        width = ids.shape[1]
        kwargs = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
            if do_sample
            else {"do_sample": False}
        )
        gen = model.generate(
            input_ids=ids.to(_device(model)),
            attention_mask=mask.to(_device(model)),
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            **kwargs,
        )[:, width:].tolist()
        for g in gen:
            out.append(g[: g.index(eos_id) + 1] if eos_id in g else g)
    return [out[i * n_samples : (i + 1) * n_samples] for i in range(len(prompts))]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def max_positions(model_dir: Path) -> int | None:
    """The longest sequence a saved model takes (None when its config does not say)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(config.get(name), int):
            return config[name]
    return None
