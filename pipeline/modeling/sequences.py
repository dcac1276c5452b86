"""How a model's sequences start and end: a BOS token or none, and for an instruct model
the tokenizer's chat template around each prompt.

The choice is the model's (``model.bos``, ``model.chat_template``, conf/model/), made once
by the SFT stage and saved beside its tokenizer (``sequence_format.json``); every later
stage reads it back with the tokenizer (``loading.load_tokenizer``), so sampling,
reference log-probs, training and evaluation frame a prompt the same way.

With a template, the prompt is one user turn and the generation prompt, and a response is
the assistant turn: its tokens and the template's end token (the tokenizer's EOS, at which
sampling stops). Scorers and judges read responses decoded without special tokens, so they
never see template tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.infra.errors import ConfigError

FORMAT_FILE = "sequence_format.json"
# Stands for the prompt while the template is rendered once to find what comes before and
# after it; no tokenizer splits it across the boundary.
_MARK = "\u2063PROMPT\u2063"


def resolve(tok, bos: object, chat_template: object, instructions: bool) -> dict:
    """The sequence format for this tokenizer: ``{"bos": bool, "chat": bool}``.

    ``bos``: true | false | auto (BOS unless the tokenizer's BOS is a token of its own chat
    template, as SmolLM2's ``<|im_start|>``: plain text then starts bare). ``chat_template``:
    true | false | auto (the template when the tokenizer has one and the task's prompts are
    instructions, ``instructions``)."""
    template = getattr(tok, "chat_template", None)
    if chat_template in (True, "true"):
        if not template:
            raise ConfigError(
                f"model.chat_template=true but the tokenizer of {tok.name_or_path!r} has no "
                "chat template: set model.chat_template=false"
            )
        chat = True
    elif chat_template in (False, "false", None):
        chat = False
    elif chat_template == "auto":
        chat = bool(template) and instructions
    else:
        raise ConfigError(f"model.chat_template={chat_template!r}: choose auto, true or false")
    if bos == "auto":
        token = tok.bos_token
        bos = not (token and template and token in template)
    elif bos not in (True, False):
        raise ConfigError(f"model.bos={bos!r}: choose auto, true or false")
    return {"bos": bool(bos), "chat": chat}


def save(tok, directory: Path, fmt: dict) -> None:
    """Record the format beside the saved tokenizer, and on the tokenizer itself."""
    (Path(directory) / FORMAT_FILE).write_text(json.dumps(fmt, sort_keys=True) + "\n")
    attach(tok, fmt)


def attach(tok, fmt: dict) -> None:
    tok.pipeline_format = dict(fmt)


def read(directory: Path) -> dict | None:
    path = Path(directory) / FORMAT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def of(tok) -> dict:
    """A tokenizer's format; without a recorded one, BOS and no template (every folder
    made before formats existed)."""
    return getattr(tok, "pipeline_format", None) or {"bos": True, "chat": False}


def start_id(tok) -> int:
    """The token that starts a plain sequence: BOS, or EOS for tokenizers without one."""
    token = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if token is None:
        raise ConfigError(f"tokenizer {tok.name_or_path!r} has neither a BOS nor an EOS token")
    return token


def chat_frame(tok) -> tuple[list[int], list[int]]:
    """Token ids before and after a prompt's own tokens in the template's user turn with the
    generation prompt (rendered once per tokenizer)."""
    cached = getattr(tok, "_pipeline_chat_frame", None)
    if cached is not None:
        return cached
    text = tok.apply_chat_template(
        [{"role": "user", "content": _MARK}], tokenize=False, add_generation_prompt=True
    )
    before, after = text.split(_MARK)
    frame = (
        tok(before, add_special_tokens=False)["input_ids"],
        tok(after, add_special_tokens=False)["input_ids"],
    )
    tok._pipeline_chat_frame = frame
    return frame


def frame_prompt(tok, content: list[int]) -> list[int]:
    """A prompt's token ids as the model takes them: in the chat template's user turn, or
    after BOS, or bare."""
    fmt = of(tok)
    if fmt["chat"]:
        before, after = chat_frame(tok)
        return [*before, *content, *after]
    return [start_id(tok), *content] if fmt["bos"] else list(content)


def content(tok, prompt: list[int]) -> list[int]:
    """A framed prompt's own tokens (``frame_prompt``'s inverse): without the chat template's
    turn markers and system text, or the BOS, so that what a scorer reads is the prompt's
    text and never the template's."""
    fmt = of(tok)
    if fmt["chat"]:
        before, after = chat_frame(tok)
        if prompt[: len(before)] == before and prompt[len(prompt) - len(after) :] == after:
            return prompt[len(before) : len(prompt) - len(after)]
        return prompt
    return prompt[1:] if fmt["bos"] and prompt[:1] == [start_id(tok)] else prompt
