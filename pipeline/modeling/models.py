"""Language-model helpers shared by the stages: build, load, sample, score.

Sequences are ``prompt + response``; every log-probability the pipeline uses is
summed over response tokens only (prompt and padding masked out). Building and
loading (``loading.py``), padding (``batching.py``) and sampling (``sampling.py``)
have modules of their own, re-exported here: the stages call ``models.<name>``.
"""

from __future__ import annotations

import torch

from pipeline.modeling import lora
from pipeline.modeling.batching import (
    join,
    model_device,
    pad,  # noqa: F401 - re-exported
    to_device,
)
from pipeline.modeling.loading import (  # noqa: F401 - re-exported
    FUSED_GELU,
    bos_id,
    disable_dropout,
    load_model,
    load_tokenizer,
    max_positions,
    record_attention,
    save_tokenizer,
    small_gpt2,
    train_bpe_tokenizer,
)
from pipeline.modeling.sampling import sample  # noqa: F401 - re-exported


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
    input_ids, attention = input_ids.to(model_device(model)), attention.to(model_device(model))
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


def head_logits(model, input_ids, attention, where) -> torch.Tensor:
    """The head on the flattened positions ``where`` only (PLAIN_HEAD models). FSDP
    must run it as a forward method of the sharded root (pipeline/modeling/distributed.py), or
    the root's hooks never gather the parameters it uses."""
    batch, width = input_ids.shape
    model = lora.core(model)  # a peft policy: its adapters sit inside the model's layers
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
    if isinstance(model, lora.Reference):  # the SFT model: the policy with its adapters off
        with model.off():
            return sequence_logps(model.policy, prompts, responses, pad_id)
    input_ids, attention, response = join(prompts, responses, pad_id)
    device = model_device(model)
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
