"""A tiny LLaMA-architecture instruct model built from a config (random weights), with a
byte-level BPE tokenizer and a ChatML chat template as SmolLM2's: BOS ``<|im_start|>``,
EOS and pad ``<|im_end|>``. Stands in for a real instruct model in the fast tests."""

from __future__ import annotations

import csv
from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build(folder: Path, vocab: int = 300, positions: int = 128) -> Path:
    """Save the tiny instruct model and its tokenizer to ``folder``; returns it."""
    from tokenizers import ByteLevelBPETokenizer

    with open(ROOT / "tests" / "fixtures" / "sentiment_reviews.csv") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    bpe = ByteLevelBPETokenizer()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(texts, vocab_size=vocab, min_frequency=2, special_tokens=specials,
                            show_progress=False)  # fmt: skip
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tok.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
