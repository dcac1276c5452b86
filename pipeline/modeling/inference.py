"""A loaded causal LM used for inference: prompt token ids, sampled completions packaged
with their texts, and per-sequence log-probabilities in batches. Shared by the stages that
sample (sample, evaluate, judge), that score responses under a model (reference) and by
tasks that build their own prompts (``Task.prompt_ids``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from pipeline.modeling import models, sequences
from pipeline.modeling import precision as precisions
from pipeline.modeling.seeding import set_seed


def make_prompts(tok, texts: list[str], prompt_tokens: int) -> list[list[int]]:
    """Each text's first ``prompt_tokens`` tokens, framed as the model takes a prompt
    (after BOS, bare, or in the chat template's user turn: ``sequences.frame_prompt``)."""
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    return [sequences.frame_prompt(tok, t[:prompt_tokens]) for t in ids]


def generate(
    model_dir: Path,
    prompt_texts: list[str],
    sample_cfg: DictConfig,
    n_samples: int,
    seed: int,
    device: str,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int = 0,
    join=lambda prompt, response: prompt + response,
    precision: str = "fp32",
    stats: dict | None = None,
    prompt_ids=make_prompts,
) -> dict:
    """Sample and package prompts, response ids and the scored texts: ``join(prompt text,
    response text)``. ``temperature``/``top_p`` default to the sample config's values;
    ``top_k`` 0 samples the full distribution; ``prompt_ids(tok, texts, prompt_tokens)``
    makes the prompts' token ids (the task's ``prompt_ids``);
    ``precision`` and ``stats`` as in ``models.sample``."""
    set_seed(seed)
    tok = models.load_tokenizer(model_dir)
    model = models.load_model(model_dir, device, precisions.inference_dtype(precision, device))
    prompts = prompt_ids(tok, prompt_texts, sample_cfg.prompt_tokens)
    responses = models.sample(
        model,
        prompts,
        n_samples=n_samples,
        max_new_tokens=sample_cfg.max_new_tokens,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        temperature=sample_cfg.temperature if temperature is None else temperature,
        top_p=sample_cfg.top_p if top_p is None else top_p,
        top_k=top_k,
        batch_size=sample_cfg.batch_size,
        generator_seed=seed,
        progress=True,
        bucket=bool(sample_cfg.get("bucket", False)),
        precision=precision,
        stats=stats,
    )
    # The prompt's own text: a chat template's turns and system text are never scored.
    prompt_text = tok.batch_decode(
        [sequences.content(tok, p) for p in prompts], skip_special_tokens=True
    )
    texts = [
        [join(prompt_text[i], tok.decode(r, skip_special_tokens=True)) for r in rs]
        for i, rs in enumerate(responses)
    ]
    return {"prompts": prompts, "responses": responses, "texts": texts}


@torch.no_grad()
def batched_logps(
    model,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    batch_size: int,
    precision: str = "fp32",
) -> np.ndarray:
    """log pi(response | prompt) per row, in the rows' order; under bf16 the forward runs
    in half precision (as the authors' reference model) and the reduction in float32.

    Rows are batched by length (longest first), so a batch pads to its own longest row
    rather than to whichever long row the input order put in it: with responses of
    mixed length (a researcher's file) most of a batch's positions were padding. Like the
    batch size, the grouping changes which forward passes share a batch, not any row's
    value beyond float rounding (padding is masked out)."""
    order = sorted(range(len(prompts)), key=lambda i: -(len(prompts[i]) + len(responses[i])))
    out = []
    device = next(model.parameters()).device
    with precisions.autocast(precision, device):
        for i in tqdm(range(0, len(order), batch_size), desc="log-probs", leave=False):
            rows = order[i : i + batch_size]
            out.append(
                models.sequence_logps(
                    model, [prompts[j] for j in rows], [responses[j] for j in rows], pad_id
                ).cpu()
            )
    values = torch.cat(out).double().numpy() if out else np.zeros(0)
    result = np.empty_like(values)
    result[np.asarray(order, dtype=np.int64)] = values
    return result
