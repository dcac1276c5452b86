"""Sampling throughput: the pipeline's batched ``models.sample`` against one
``model.generate`` call per response (batch 1), on the same random-weight model.

A random model almost never emits EOS (1 in vocab per token), so every response would
run to ``max_new_tokens`` and batching would look free of padding. A constant added to
the EOS logit (a forward hook on the output layer) makes a share of responses end early
as the embedded SFT model's do (``DataSpec.p_eos``); the report gives the share measured.
"""

from __future__ import annotations

import math
import time

import torch

from scripts.bench import synthetic as syn
from scripts.bench.ours import median
from scripts.bench.synthetic import EOS, PAD, DataSpec, ModelSpec


def eos_bias(vocab_size: int, p_end: float, max_new_tokens: int) -> float:
    """The EOS logit offset that makes P(EOS before the last token) about ``p_end`` for
    near-uniform logits: a per-token EOS probability q with 1-(1-q)^(n-1) = p_end."""
    q = 1.0 - (1.0 - p_end) ** (1.0 / max(1, max_new_tokens - 1))
    return math.log(q * (vocab_size - 1) / (1.0 - q))


def sampling_model(spec: ModelSpec, data: DataSpec, seed: int) -> torch.nn.Module:
    model = syn.build_model(spec, seed).eval()
    bias = torch.zeros(spec.vocab_size)
    bias[EOS] = eos_bias(spec.vocab_size, data.p_eos, data.max_new_tokens)
    model.lm_head.register_forward_hook(lambda _module, _inputs, logits: logits + bias)
    return model


def _padding(rows: list[list[int]], responses: list[list[int]], batch_size: int) -> dict:
    """Positions a batched ``generate`` runs through, and how many of them are padding:
    prompts are left-padded to the batch's longest, and a batch goes on until its
    longest response ends (``generate`` stops once every row has ended)."""
    total = real = gen_total = gen_real = 0
    for start in range(0, len(rows), batch_size):
        prompts, outs = rows[start : start + batch_size], responses[start : start + batch_size]
        width, new = max(map(len, prompts)), max(map(len, outs))
        total += len(prompts) * (width + new)
        real += sum(map(len, prompts)) + sum(map(len, outs))
        gen_total += len(outs) * new
        gen_real += sum(map(len, outs))
    return {
        "padded_share": 1 - real / total,
        "padded_share_generated": 1 - gen_real / gen_total,
    }


def batched(spec: dict, data: dict, scale: str, repeats: int, seed: int = 0) -> dict:
    """``models.sample`` over a whole sample set, the scale's batch size and settings."""
    from pipeline.modeling import models

    mspec, dspec = ModelSpec(**spec), DataSpec(**data)
    cfg = syn.compose_cfg(scale).scale.sample
    model = sampling_model(mspec, dspec, seed)
    prompts = syn.make_samples(mspec, dspec, seed)["prompts"]

    def once(prompts: list[list[int]]):
        start = time.perf_counter()
        out = models.sample(
            model, prompts, n_samples=dspec.n_samples, max_new_tokens=dspec.max_new_tokens,
            eos_id=EOS, pad_id=PAD, temperature=float(cfg.temperature), top_p=float(cfg.top_p),
            batch_size=int(cfg.batch_size), generator_seed=seed,
        )  # fmt: skip
        return time.perf_counter() - start, [r for rs in out for r in rs]

    once(prompts[: max(1, int(cfg.batch_size) // dspec.n_samples)])  # warm-up: one batch
    seconds, responses = [], []
    for _ in range(repeats):
        s, responses = once(prompts)
        seconds.append(s)
    tokens = sum(map(len, responses))
    rows = [p for p in prompts for _ in range(dspec.n_samples)]
    return {
        "model": mspec.name,
        "responses": len(responses),
        "batch_size": int(cfg.batch_size),
        "real_tokens": tokens,
        "mean_response_tokens": tokens / len(responses),
        "ended_early_share": sum(r[-1] == EOS and len(r) < dspec.max_new_tokens for r in responses)
        / len(responses),
        "repeats": repeats,
        "seconds": seconds,
        "seconds_median": median(seconds),
        "tokens_per_s": tokens / median(seconds),
        **_padding(rows, responses, int(cfg.batch_size)),
    }


def sequential(
    spec: dict, data: dict, scale: str, n_rows: int, repeats: int, seed: int = 0
) -> dict:
    """One ``generate`` call per response (batch 1) for the first ``n_rows`` rows of
    the same sample set, the same sampling settings."""
    mspec, dspec = ModelSpec(**spec), DataSpec(**data)
    cfg = syn.compose_cfg(scale).scale.sample
    model = sampling_model(mspec, dspec, seed)
    prompts = syn.make_samples(mspec, dspec, seed)["prompts"]
    rows = [p for p in prompts for _ in range(dspec.n_samples)][:n_rows]
    kwargs = {
        "do_sample": True,
        "temperature": float(cfg.temperature),
        "top_p": float(cfg.top_p),
        "top_k": 0,
    }
    if float(cfg.temperature) <= 0:
        kwargs = {"do_sample": False}

    @torch.no_grad()
    def once(rows: list[list[int]]):
        torch.manual_seed(seed)
        out = []
        start = time.perf_counter()
        for row in rows:
            ids = torch.tensor([row])
            g = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids),
                max_new_tokens=dspec.max_new_tokens, eos_token_id=EOS, pad_token_id=PAD, **kwargs,
            )[0, len(row):].tolist()  # fmt: skip
            out.append(g[: g.index(EOS) + 1] if EOS in g else g)
        return time.perf_counter() - start, out

    once(rows[:4])  # warm-up
    seconds, responses = [], []
    for _ in range(repeats):
        s, responses = once(rows)
        seconds.append(s)
    tokens = sum(map(len, responses))
    return {
        "model": mspec.name,
        "responses": len(responses),
        "batch_size": 1,
        "real_tokens": tokens,
        "mean_response_tokens": tokens / len(responses),
        "repeats": repeats,
        "seconds": seconds,
        "seconds_median": median(seconds),
        "tokens_per_s": tokens / median(seconds),
    }
