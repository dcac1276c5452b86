"""Language-model helpers shared by the stages: build, load, sample, score.

Sequences are ``prompt + response``; every log-probability the pipeline uses is
summed over response tokens only (prompt and padding masked out).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
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
from pipeline.modeling import precision as precisions

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
        activation_function=FUSED_GELU,
    )
    return GPT2LMHeadModel(config)


# GPT-2, GPT-Neo and GPT-J ship "gelu_new", the tanh approximation written as seven
# elementwise tensor ops; torch's gelu(approximate="tanh") is the same formula in one
# kernel (forward and backward), which cuts a tenth off a CPU training step.
FUSED_GELU = "gelu_pytorch_tanh"


def load_model(path: str | Path, device: str = "cpu", dtype: str = "float32") -> torch.nn.Module:
    """A causal LM with SDPA attention and the fused GELU (same function as gelu_new)."""
    try:
        config = AutoConfig.from_pretrained(str(path))
        if getattr(config, "activation_function", None) == "gelu_new":
            config.activation_function = FUSED_GELU
        model = AutoModelForCausalLM.from_pretrained(
            str(path), config=config, dtype=getattr(torch, dtype), attn_implementation="sdpa"
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
    left-padded, so that generation continues from every row's last real token).
    Filled in numpy: one small torch tensor per row cost ~5% of a CPU training step."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for b, s in enumerate(seqs):
        cols = slice(width - len(s), width) if left else slice(0, len(s))
        ids[b, cols] = s
        mask[b, cols] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def join(
    prompts: list[list[int]], responses: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``prompt + response`` batch.

    Returns input_ids (B, T), attention_mask (B, T), and response_mask (B, T) that
    is 1 where the *target* token (position t) belongs to the response.
    """
    seqs = [p + r for p, r in zip(prompts, responses, strict=True)]
    input_ids, attention = pad(seqs, pad_id)
    starts = torch.tensor([len(p) for p in prompts])[:, None]
    ends = torch.tensor([len(s) for s in seqs])[:, None]
    cols = torch.arange(input_ids.shape[1])[None, :]
    response = ((cols >= starts) & (cols < ends)).float()
    return input_ids, attention, response


def response_token_logprobs(
    model: torch.nn.Module,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    with_prompt_mask: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Full next-token log-softmax at every response position.

    Returns (log_probs (B, T-1, V), target_ids (B, T-1), mask (B, T-1)), where
    position t predicts token t+1 and mask marks response targets. With
    ``with_prompt_mask`` a fourth tensor (B, T-1) marks the prompt's targets (every
    prompt token after the first, which nothing predicts).
    """
    input_ids, attention, response = join(prompts, responses, pad_id)
    input_ids, attention = input_ids.to(_device(model)), attention.to(_device(model))
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
    out = torch.log_softmax(logits, -1), input_ids[:, 1:], response[:, 1:].to(logits.device)
    if not with_prompt_mask:
        return out
    return *out, attention[:, 1:].float() - out[2]


class _TokenLogprob(torch.autograd.Function):
    """log softmax(logits)[target] per row, reduced in float32 a chunk of rows at a time.

    Only the logits (in their own dtype, bf16 under autocast) and one float per row
    are kept for the backward pass, which recomputes the softmax chunk by chunk: a
    full-vocabulary float32 log-softmax is never held (at GPT-2 Large's shape it
    would be 1.3 GB per step).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        rows = _chunk_rows(logits)
        for i in range(0, logits.shape[0], rows):
            lse[i : i + rows] = torch.logsumexp(logits[i : i + rows].float(), -1)
        picked = logits.gather(-1, targets[:, None]).squeeze(-1).float()
        ctx.save_for_backward(logits, targets, lse)
        return picked - lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, targets, lse = ctx.saved_tensors
        out = torch.empty_like(logits)
        rows = _chunk_rows(logits)
        for i in range(0, logits.shape[0], rows):
            g = grad[i : i + rows, None].float()
            # d(logit_t - lse)/d logits = onehot(t) - softmax
            part = torch.exp(logits[i : i + rows].float() - lse[i : i + rows, None]).mul_(-g)
            part.scatter_add_(-1, targets[i : i + rows, None], g)
            out[i : i + rows] = part
        return out, None


def _chunk_rows(logits: torch.Tensor, budget: int = 1 << 26) -> int:
    """Rows per chunk so that one float32 chunk stays under ``budget`` elements (256 MB)."""
    return max(1, budget // max(1, logits.shape[-1]))


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) for each row of ``logits`` (N, V), in float32, shape (N,).
    Float32 logits take torch's fused log-softmax (fastest on a CPU, and nothing is
    upcast); half-precision ones the chunked float32 reduction above."""
    if logits.dtype == torch.float32:
        return torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    return _TokenLogprob.apply(logits, targets)


# Architectures whose logits are exactly ``output_embeddings(base_model(...))``: for them
# the head runs on response positions only (the prompt's and the padding's logits are
# never used). Others go through the model's own forward.
PLAIN_HEAD = {"gpt2", "gpt_neo", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"}


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device without waiting: a copy from pageable memory is synchronous, and
    would stall the host until the GPU has finished every step queued before it."""
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def head_logits(model, input_ids, attention, where) -> torch.Tensor:
    """The head on the flattened positions ``where`` only (PLAIN_HEAD models). FSDP
    must run it as a forward method of the sharded root (pipeline/modeling/distributed.py), or
    the root's hooks never gather the parameters it uses."""
    batch, width = input_ids.shape
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention)[0]
    return _head(model.get_output_embeddings(), hidden.reshape(batch * width, -1)[where])


def _head(head: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """``head(hidden)``. On CUDA a vocabulary that is not a multiple of 64 (GPT-2's
    50,257) is padded with zero rows for the product and cut after it: cuBLAS has no
    fast kernel for the odd row stride, and the padded product took a sixth of a GPT-2
    Large bf16 step on an H200 in an older cutlass kernel."""
    if hidden.device.type != "cuda" or head.weight.shape[0] % 64 == 0:
        return head(hidden)
    return padded_linear(hidden, head.weight, head.bias, 64)


def padded_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, multiple: int
) -> torch.Tensor:
    """``linear(x, weight, bias)`` computed with the output dimension padded to a
    multiple of ``multiple`` by zero rows, then cut back (same values and gradients)."""
    rows = weight.shape[0]
    extra = -rows % multiple
    weight = torch.cat([weight, weight.new_zeros(extra, weight.shape[1])])
    if bias is not None:
        bias = torch.cat([bias, bias.new_zeros(extra)])
    return torch.nn.functional.linear(x, weight, bias)[:, :rows]


def sequence_logps(
    model: torch.nn.Module, prompts: list[list[int]], responses: list[list[int]], pad_id: int
) -> torch.Tensor:
    """log pi(response | prompt) summed over response tokens, float32, shape (B,).

    The positions that predict response tokens are found on the host, so selecting them
    on the device needs no synchronisation (a boolean-mask index would wait for the GPU)."""
    input_ids, attention, response = join(prompts, responses, pad_id)
    device = _device(model)
    mask = response[:, 1:].bool()  # position t predicts token t+1
    batch, width = input_ids.shape
    rows, cols = mask.nonzero(as_tuple=True)
    where = to_device(rows * width + cols, device)  # in the flattened (B*T) positions
    targets = to_device(input_ids[:, 1:][mask], device)
    input_ids, attention = to_device(input_ids, device), to_device(attention, device)
    if getattr(model.config, "model_type", None) in PLAIN_HEAD:
        # A sharded (FSDP) policy carries head_logits as a registered forward method.
        head = getattr(model, "head_logits", None)
        logits = (
            head(input_ids, attention, where)
            if head
            else head_logits(model, input_ids, attention, where)
        )
    else:
        logits = model(input_ids=input_ids, attention_mask=attention).logits
        logits = logits.reshape(batch * width, -1)[where]
    per_token = token_logprobs(logits, targets)
    # Put each token back in its row and sum the rows in order: deterministic on every
    # device (index_add would accumulate with atomics on CUDA).
    rows_of = per_token.new_zeros(batch * width).index_put_((where,), per_token)
    return rows_of.view(batch, width).sum(-1)


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
    top_k: int = 0,
    batch_size: int = 256,
    generator_seed: int = 0,
    progress: bool = False,
    bucket: bool = False,
    precision: str = "fp32",
    stats: dict | None = None,
) -> list[list[list[int]]]:
    """``n_samples`` responses per prompt (token ids, cut after the first eos).

    Batched ancestral sampling with the model's KV cache via ``generate``, which stops
    a batch as soon as every row has ended; prompts are left-padded so that every row
    continues from its last real token. ``bucket`` orders the rows by prompt length
    first, so a batch holds prompts of similar lengths (less padding; the draws then
    differ from the unbucketed order, so it is part of the sample key). ``precision``
    as in ``pipeline.modeling.precision``. ``stats``, if given, receives ``real_tokens``
    (generated tokens up to each row's EOS), ``positions`` (rows x decoding steps,
    padding included), ``pad_share`` and ``seconds``.
    Returns responses[prompt][sample] -> list of token ids.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(generator_seed)
    model.eval()
    rows = [p for p in prompts for _ in range(n_samples)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i])) if bucket else None
    if order is not None:
        rows = [rows[i] for i in order]
    out: list[list[int]] = []
    do_sample = temperature > 0
    kwargs = (
        # top_k 0 is the full distribution (the library's default would be 50).
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k}
        if do_sample
        else {"do_sample": False}
    )
    positions, start_time = 0, time.perf_counter()
    batches = range(0, len(rows), batch_size)
    device = _device(model)
    with precisions.autocast(precision, device):
        for start in tqdm(batches, desc="sampling", disable=not progress, leave=False):
            chunk = rows[start : start + batch_size]
            ids, mask = pad(chunk, pad_id, left=True)
            width = ids.shape[1]
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                eos_token_id=eos_id,
                pad_token_id=pad_id,
                **kwargs,
            )[:, width:].tolist()
            positions += len(gen) * (len(gen[0]) if gen else 0)
            for g in gen:
                out.append(g[: g.index(eos_id) + 1] if eos_id in g else g)
    if order is not None:
        unsorted: list[list[int]] = [[] for _ in out]
        for place, row in zip(order, out, strict=True):
            unsorted[place] = row
        out = unsorted
    if stats is not None:
        real = sum(len(g) for g in out)
        stats.update(
            real_tokens=real,
            positions=positions,
            pad_share=round(1 - real / positions, 4) if positions else 0.0,
            seconds=round(time.perf_counter() - start_time, 3),
        )
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
