"""Sampling responses from a causal LM, batched, through ``generate`` and its KV cache."""

from __future__ import annotations

import time

import torch

from pipeline.modeling import precision as precisions
from pipeline.modeling.batching import model_device, pad


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
    device = model_device(model)
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
