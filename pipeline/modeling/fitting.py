"""Given prompts and responses (``task=custom``) fitted to the model: token ids framed as the
model takes them, and what is too long cut, dropped or refused.

``data.max_prompt_tokens`` (null: ``scale.sample.prompt_tokens``) bounds a prompt's own
tokens, ``data.max_response_tokens`` (null: what the model's positions leave after the
prompt) a response's tokens with its EOS. ``data.truncation``:

- ``truncate`` (the default, as TRL's ``max_length``): a prompt keeps its end (the words
  next to the response), a response its start, and still ends with EOS;
- ``drop``: a response too long is dropped (its score becomes NaN: it forms no pair); a
  prompt too long drops its whole group;
- ``error``: the first one stops the run, naming the file, row and limit.

How many were cut or dropped is printed and recorded in the sample stage's manifest.
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.infra.checks import get
from pipeline.infra.errors import ConfigError, DataError
from pipeline.modeling import sequences

DEFAULTS = {"max_prompt_tokens": None, "max_response_tokens": None, "truncation": "truncate"}
POLICIES = ("truncate", "drop", "error")


class Fit:
    """One pass over a prompt set's rows, counting what it cut and dropped."""

    def __init__(self, cfg: DictConfig, tok, positions: int | None, where) -> None:
        self.tok, self.positions, self.where = tok, positions, where
        self.policy = get(cfg, "data.truncation") or "truncate"
        if self.policy not in POLICIES:
            raise ConfigError(
                f"data.truncation={self.policy!r}: choose one of {', '.join(POLICIES)}"
            )
        self.max_prompt = get(cfg, "data.max_prompt_tokens") or cfg.scale.sample.prompt_tokens
        self.max_response = get(cfg, "data.max_response_tokens")
        self.chat = sequences.of(tok)["chat"]
        self.counts = {"prompts_cut": 0, "responses_cut": 0, "responses_dropped": 0,
                       "groups_dropped": 0}  # fmt: skip
        self.dropped: list[list[int]] = []  # [group, response] pairs with no score
        self._group, self._drop_group = -1, False

    def prompt(self, row: dict) -> list[int]:
        """The prompt's framed token ids (its own tokens bounded by ``max_prompt``)."""
        self._group += 1
        self._drop_group = False
        messages = row.get("messages")
        if messages is not None and not self.chat:
            raise ConfigError(
                f"{self.where(row['lines'][0])}: the prompt is a list of chat messages but the "
                "model takes no chat template: use a model with one and model.chat_template="
                "auto or true"
            )
        if messages is not None:
            return self._messages(row, messages)
        ids = self.tok(row["text"], add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_prompt:
            ids = self._long_prompt(row, ids)
        return sequences.frame_prompt(self.tok, ids)

    def _messages(self, row: dict, messages: list[dict]) -> list[int]:
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        # The template's own tokens count too: a chat prompt is cut from the front as a
        # whole (the last turns and the generation prompt stay).
        return self._long_prompt(row, ids) if len(ids) > self.max_prompt else ids

    def _long_prompt(self, row: dict, ids: list[int]) -> list[int]:
        where = self.where(row["lines"][0])
        if self.policy == "error":
            raise DataError(
                f"{where}: the prompt is {len(ids)} tokens, more than data.max_prompt_tokens="
                f"{self.max_prompt} (data.truncation=truncate cuts it, drop leaves it out)"
            )
        if self.policy == "drop":
            self._drop_group = True
            self.counts["groups_dropped"] += 1
            return ids[-self.max_prompt :]
        self.counts["prompts_cut"] += 1
        return ids[-self.max_prompt :]

    def response(self, row: dict, k: int, text: str, prompt_len: int) -> list[int]:
        """Response ``k``'s token ids + EOS, within its bound."""
        eos = self.tok.eos_token_id
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        where = self.where(row["lines"][k])
        if eos in ids:
            raise DataError(
                f"{where}: a response contains the end-of-text token {self.tok.eos_token!r}"
            )
        limit = self._limit(prompt_len)
        if self._drop_group:
            self.dropped.append([self._group, k])
            return [*ids[: max(limit - 1, 0)], eos]
        if limit is None or len(ids) + 1 <= limit:
            return [*ids, eos]
        if self.policy == "error":
            raise DataError(
                f"{where}: prompt + response are {prompt_len + len(ids) + 1} tokens (with EOS), "
                f"more than the {limit} the response may take (data.max_response_tokens, or the "
                f"model's {self.positions} positions); data.truncation=truncate cuts it"
            )
        if limit < 2:
            raise DataError(f"{where}: the prompt leaves no room for a response ({limit} tokens)")
        if self.policy == "drop":
            self.counts["responses_dropped"] += 1
            self.dropped.append([self._group, k])
        else:
            self.counts["responses_cut"] += 1
        return [*ids[: limit - 1], eos]

    def _limit(self, prompt_len: int) -> int | None:
        room = None if self.positions is None else self.positions - prompt_len
        if self.max_response is None:
            return room
        return int(self.max_response) if room is None else min(int(self.max_response), room)

    def report(self) -> None:
        if any(self.counts.values()):
            said = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.counts.items() if v)
            print(f"[sample] data.truncation={self.policy}: {said}")
