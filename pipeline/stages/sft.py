"""Stage 2, sft: the supervised fine-tuned model that is both the policy's start
and the frozen reference.

Embedded scale: a small GPT-2-architecture model trained from scratch with a
byte-level BPE tokenizer trained on the same review text. Paper scale: fine-tune
a hub model (gpt2-large) on the training reviews. Same loop either way.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache
from pipeline.infra.hub import require_model
from pipeline.infra.io import read_jsonl
from pipeline.modeling import models
from pipeline.modeling import precision as precisions
from pipeline.modeling.checkpoint import Checkpointer, loop_state, restore_loop
from pipeline.modeling.seeding import set_seed

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# Config keys this stage reads that do not change the model it trains.
NOT_IN_KEY = ("scale.sft.checkpoint_every",)


def params(cfg: DictConfig) -> dict:
    """The model's architecture (or pretrained name) and every SFT setting but how
    often it checkpoints."""
    sft_params = OmegaConf.to_container(cfg.scale.sft, resolve=True)
    for name in ("checkpoint_every", "checkpoint_seconds"):  # when we save changes nothing
        sft_params.pop(name, None)
    model_params = OmegaConf.to_container(cfg.scale.model, resolve=True)
    return {"model": model_params, "sft": sft_params, **precisions.key(cfg)}


def run(cfg: DictConfig, cache: Cache, data: Artifact) -> Artifact:
    model_cfg, sft_cfg = cfg.scale.model, cfg.scale.sft
    if model_cfg.pretrained:
        require_model(model_cfg.pretrained, "scale.model.pretrained")
    checkpointer = Checkpointer(
        cache.checkpoint_dir("sft", cache.key("sft", params(cfg), [data], version=VERSION)),
        sft_cfg.get("checkpoint_every", 0),
        "sft",
        seconds=sft_cfg.get("checkpoint_seconds", 0),
    )

    def build(out: Path) -> dict:
        gen = set_seed(sft_cfg.seed)
        texts = tasks.get(cfg).sft_texts(read_jsonl(data / "train.jsonl", required=("text",)))
        if model_cfg.pretrained:
            tok = models.load_tokenizer(model_cfg.pretrained)
            model = models.load_model(model_cfg.pretrained, cfg.device)
        else:
            tok = models.train_bpe_tokenizer(texts, model_cfg.vocab_size)
            model = models.small_gpt2(
                len(tok),
                model_cfg.n_layer,
                model_cfg.n_embd,
                model_cfg.n_head,
                model_cfg.n_positions,
            ).to(cfg.device)
        bos, eos = models.bos_id(tok), tok.eos_token_id
        seqs = [
            [bos, *ids[: sft_cfg.max_length - 2], eos]
            for ids in tok(texts, add_special_tokens=False)["input_ids"]
        ]
        final_loss = train_lm(
            model, seqs, sft_cfg, tok.pad_token_id, gen, cfg.device, checkpointer,
            precisions.of(cfg),
        )  # fmt: skip
        model.save_pretrained(out / "model")
        tok.save_pretrained(out / "model")
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"[sft] {n_params / 1e6:.2f}M parameters, {len(seqs)} texts, final loss {final_loss:.3f}"
        )
        return {"final_loss": final_loss, "n_params": n_params, "n_texts": len(seqs)}

    return cache.stage("sft", params(cfg), [data], build, version=VERSION)


def train_lm(
    model: torch.nn.Module,
    seqs: list[list[int]],
    sft_cfg: DictConfig,
    pad_id: int,
    gen: torch.Generator,
    device: str,
    checkpointer: Checkpointer | None = None,
    precision: str = "fp32",
) -> float:
    """Next-token cross-entropy on whole texts (padding ignored). Resumes from the
    ``checkpointer``'s saved state when there is one."""
    precisions.configure(precision)
    opt = torch.optim.AdamW(
        model.parameters(), lr=sft_cfg.lr, weight_decay=sft_cfg.weight_decay, fused=True
    )
    sched = get_cosine_schedule_with_warmup(opt, sft_cfg.warmup_steps, sft_cfg.steps)
    model.train()
    ema, first = math.nan, 0
    saved = checkpointer.load() if checkpointer else None
    if saved is not None:
        restore_loop(saved, model, opt, sched, gen)
        ema, first = saved["ema"], saved["step"]
        print(f"[sft] resumed from the checkpoint after step {first - 1}")
    bar = tqdm(range(first, sft_cfg.steps), desc="sft", leave=False)
    for step in bar:
        idx = torch.randint(len(seqs), (sft_cfg.batch_size,), generator=gen).tolist()
        ids, mask = models.pad([seqs[i] for i in idx], pad_id)
        labels = ids.masked_fill(mask == 0, -100)
        with precisions.autocast(precision, device):
            loss = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)
            ).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), sft_cfg.max_grad_norm)
        opt.step()
        sched.step()
        ema = loss.item() if math.isnan(ema) else 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(loss=f"{ema:.3f}")
        if checkpointer and checkpointer.due(step):
            checkpointer.save(loop_state(model, opt, sched, gen, ema=ema, step=step + 1), step)
    model.eval()
    return round(ema, 4)
