"""What every scored-data reader returns: prompts with their responses and scores.

``Group`` and ``ScoredData`` are the readers' common output (``scored_files`` for the
grouped and flat layouts, ``scored_layouts`` for pairs and nested completions); the
``GroupBuilder`` gathers responses by prompt and refuses a response given two scores.

A group is message-based when ``Group.prompt_messages`` is not None: the prompt is then
that list of chat messages ``{"role": str, "content": str}`` (to be rendered with the
model's chat template) and ``Group.prompt`` only its plain-text stand-in. Responses are
always strings (an assistant message's content)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.corpora.scored_messages import Messages
from pipeline.infra.errors import ConfigError, DataError
from pipeline.math.pairing import all_pairs

TRANSFORMS = ("auto", "identity", "negate", "rank")


@dataclass
class Group:
    """All responses to one prompt, in file order. ``lines[k]`` is the 1-based line (JSONL)
    or row (other sources) that ``responses[k]`` first came from (a grouped row's
    responses share its line), so a problem found later can still point at the file.
    ``prompt_messages`` is the prompt as chat messages, or None for a text prompt."""

    prompt: str
    responses: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    prompt_messages: Messages | None = None


@dataclass
class ScoredData:
    """The groups of a scored source, in order of each prompt's first appearance.
    ``path`` names the source (a file, a folder, or ``name[split]`` on the hub); ``unit``
    is what its numbers count ("line" for JSONL, "row" otherwise); ``layout_line`` says
    which layout and fields were read, ``transform`` which score transform."""

    groups: list[Group]
    path: Path | str
    unit: str = "line"
    layout: str = "grouped"
    layout_line: str = ""
    transform: str = "identity"  # data.score_transform as applied

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def n_responses(self) -> int:
        return sum(len(g.responses) for g in self.groups)

    @property
    def n_empty(self) -> int:
        # Only "" counts: it is a real sample where the model stopped at once. A
        # whitespace-only response is text like any other.
        return sum(1 for g in self.groups for r in g.responses if r == "")

    @property
    def n_message_groups(self) -> int:
        return sum(g.prompt_messages is not None for g in self.groups)

    def row(self, n: int) -> str:
        """Where line/row ``n`` is, for a message: ``f.parquet row 3``."""
        return f"{self.path} {self.unit} {n}"

    def pairs(self) -> np.ndarray:
        """int64 (n_pairs, 3) of (group, chosen, rejected); indices into each group's
        responses. Ties form no pair; order is by group, then i < j."""
        return ragged_pairs([g.scores for g in self.groups])


def padded_scores(scores: Sequence[Sequence[float]]) -> np.ndarray:
    """Groups of different sizes as one float64 (n_groups, largest group) table, NaN where
    a group has no response: the shape ``all_pairs`` and the score stage take."""
    table = np.full((len(scores), max((len(g) for g in scores), default=0)), np.nan)
    for i, group in enumerate(scores):
        table[i, : len(group)] = group
    return table


def ragged_pairs(scores: Sequence[Sequence[float]]) -> np.ndarray:
    """``all_pairs`` for groups of different sizes: int64 (n_pairs, 3) of (group,
    chosen, rejected) for every pair within a group with different scores, in the same
    deterministic order (group, then i < j)."""
    rows = []
    for g, group_scores in enumerate(scores):
        # One group is a (1, n) matrix for all_pairs, so the pairing rule (ties, order,
        # which side wins) lives in one place; only its prompt column is renumbered.
        p = all_pairs(np.asarray(group_scores, dtype=np.float64).reshape(1, -1))
        p[:, 0] = g
        rows.append(p)
    if not rows:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64, copy=False)


def score_value(value: Any, name: str, where: str) -> float:
    """A finite float from a row's value, or a DataError naming ``where`` and ``name``."""
    # bool is an int in Python, but true/false is not a score; a numeric string is
    # refused too, since it usually means a column was exported with the wrong type.
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise DataError(f"{where}: {name} ({repr(value)[:40]}) is not a number")
    try:
        score = float(value)
    except OverflowError:  # an integer literal too large for a float
        score = math.inf
    # json reads NaN, Infinity and 1e400 (as inf) without complaint.
    if not math.isfinite(score):
        raise DataError(f"{where}: {name} is {repr(value)[:40]}; scores must be finite")
    return score


def score_transform(name: str, score_name: str = "") -> tuple[str, Callable[[float], float]]:
    """(resolved name, function) of ``data.score_transform``: identity (x), negate (-x)
    or rank (-x: rank 1 is the best, so it gets the highest score, -1). ``auto`` is rank
    when the score field's last part is ``rank`` (Nectar's ``answers[].rank``), else
    identity."""
    if name not in TRANSFORMS:
        raise ConfigError(f"data.score_transform={name!r} must be one of {', '.join(TRANSFORMS)}")
    if name == "auto":
        last = score_name.replace("[]", ".").split(".")[-1].lower()
        name = "rank" if last in ("rank", "ranking") else "identity"
    return name, ((lambda x: x) if name == "identity" else (lambda x: -x))


class GroupBuilder:
    """Responses gathered by prompt (the text and, for chat prompts, the messages), in
    order of first appearance. With ``merge`` (pair rows and nested completions, which
    describe one set of responses) a response text is kept once per group, and the same
    text with two scores is a DataError naming both rows. Without it (grouped and flat
    rows: samples, where two samples may be the same text, e.g. "", scored apart) every
    response is kept as given."""

    def __init__(self, where: Callable[[int], str], unit: str, merge: bool) -> None:
        self.where, self.unit, self.merge = where, unit, merge
        self._groups: dict[tuple, Group] = {}  # dicts keep insertion order
        self._seen: dict[tuple, dict[str, tuple[int, str]]] = {}

    def add(
        self,
        prompt: str,
        messages: Messages | None,
        response: str,
        score: float,
        line: int,
        name: str,
    ) -> None:
        key = (
            prompt,
            None if messages is None else tuple((m["role"], m["content"]) for m in messages),
        )
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(prompt=prompt, prompt_messages=messages)
            self._seen[key] = {}
        seen = self._seen[key]
        if self.merge and response in seen:
            k, first = seen[response]
            if group.scores[k] != score:
                raise DataError(
                    f"{self.where(group.lines[k])} ({first}) and {self.unit} {line} ({name}): "
                    f"the response {response[:40]!r} to one prompt has two scores, "
                    f"{group.scores[k]:g} and {score:g}"
                )
            return
        if self.merge:
            seen[response] = (len(group.responses), name)
        group.responses.append(response)
        group.scores.append(score)
        group.lines.append(line)

    def groups(self) -> list[Group]:
        return list(self._groups.values())
