"""A researcher's own scored preference data (the ``custom`` task, ``data.path``).

A JSONL file of prompts, responses and scores, in either (or both) of two row layouts:

* grouped, one prompt per line:
  ``{"prompt": str, "responses": [str, ...], "scores": [number, ...]}``
* flat, one response per line: ``{"prompt": str, "text": str, "reward": number}``

Rows with the same prompt (exact string) form one group wherever they are in the file,
so a flat file need not be sorted and groups may differ in size. Pairs are formed within
a group between responses with different scores, the higher-scored one chosen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.infra.errors import ConfigError, DataError
from pipeline.infra.io import json_objects
from pipeline.math.pairing import all_pairs


@dataclass
class Group:
    """All responses to one prompt, in file order. ``lines[k]`` is the 1-based line of
    ``responses[k]`` (a grouped row's responses share its line), so a problem found later
    can still point at the file."""

    prompt: str
    responses: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


@dataclass
class ScoredData:
    """The groups of a scored file, in order of each prompt's first appearance."""

    groups: list[Group]
    path: Path

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


def read_scored(
    path: str | Path,
    prompt_field: str = "prompt",
    response_field: str = "text",
    responses_field: str = "responses",
    score_field: str = "reward",
    scores_field: str = "scores",
) -> ScoredData:
    """Read a scored JSONL file; the layout (grouped or flat) is decided per line by
    which of ``responses_field`` / ``response_field`` the row has. The first bad line is
    a DataError naming the file and its 1-based line number."""
    # The layout is detected from the field names, so names that coincide would make a
    # row ambiguous or read one value as two things.
    if response_field == responses_field:
        raise ConfigError(
            f"response_field and responses_field are both {response_field!r}; "
            "the flat and grouped layouts need different names"
        )
    others = {response_field, responses_field, score_field, scores_field}
    if prompt_field in others:
        raise ConfigError(
            f"prompt_field {prompt_field!r} is also used for a response or score field"
        )

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if not path.is_file():
        raise DataError(f"{path} is not a file")

    groups: dict[str, Group] = {}  # dicts keep insertion order: first appearance
    n_rows = 0
    for n, row in _rows(path):
        where = f"{path} line {n}"
        if prompt_field not in row:
            raise DataError(f"{where}: missing field {prompt_field!r}")
        prompt = row[prompt_field]
        if not isinstance(prompt, str):
            raise DataError(
                f"{where}: {prompt_field!r} must be a string, got {type(prompt).__name__}"
            )
        if prompt == "":
            raise DataError(f"{where}: {prompt_field!r} is empty")

        grouped, flat = responses_field in row, response_field in row
        if grouped and flat:
            raise DataError(
                f"{where}: has both {responses_field!r} (grouped layout) and "
                f"{response_field!r} (flat layout); use one layout per line"
            )
        if grouped:
            responses, scores = _grouped_row(row, responses_field, scores_field, where)
        elif flat and isinstance(row[response_field], list):
            # A list under the flat name is a group too (data.response_field=answers with
            # its scores under data.score_field, or the scores_field).
            scores_at = score_field if score_field in row else scores_field
            responses, scores = _grouped_row(row, response_field, scores_at, where)
        elif flat:
            responses, scores = _flat_row(row, response_field, score_field, where)
        else:
            raise DataError(
                f"{where}: missing field {responses_field!r} (grouped layout) or "
                f"{response_field!r} (flat layout)"
            )

        group = groups.setdefault(prompt, Group(prompt=prompt))
        group.responses.extend(responses)
        group.scores.extend(scores)
        group.lines.extend([n] * len(responses))
        n_rows += 1

    if n_rows == 0:
        raise DataError(f"{path} has no rows (expected one JSON object per line)")
    return ScoredData(groups=list(groups.values()), path=path)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line."""
    with open(path, "rb") as f:
        yield from json_objects(f, path)


def _grouped_row(
    row: dict[str, Any], responses_field: str, scores_field: str, where: str
) -> tuple[list[str], list[float]]:
    if scores_field not in row:
        raise DataError(f"{where}: missing field {scores_field!r}")
    responses, scores = row[responses_field], row[scores_field]
    if not isinstance(responses, list):
        raise DataError(
            f"{where}: {responses_field!r} must be a list of strings, "
            f"got {type(responses).__name__}"
        )
    if not isinstance(scores, list):
        raise DataError(
            f"{where}: {scores_field!r} must be a list of numbers, got {type(scores).__name__}"
        )
    # An empty list adds nothing to its group and is almost surely a broken export.
    if not responses:
        raise DataError(f"{where}: {responses_field!r} is an empty list")
    if len(responses) != len(scores):
        raise DataError(
            f"{where}: {len(responses)} {responses_field!r} but {len(scores)} {scores_field!r}"
        )
    for i, response in enumerate(responses):
        if not isinstance(response, str):
            raise DataError(
                f"{where}: {responses_field!r}[{i}] must be a string, got {type(response).__name__}"
            )
    return responses, [_score(s, f"{scores_field!r}[{i}]", where) for i, s in enumerate(scores)]


def _flat_row(
    row: dict[str, Any], response_field: str, score_field: str, where: str
) -> tuple[list[str], list[float]]:
    if score_field not in row:
        raise DataError(f"{where}: missing field {score_field!r}")
    response = row[response_field]
    if not isinstance(response, str):
        raise DataError(
            f"{where}: {response_field!r} must be a string, got {type(response).__name__}"
        )
    return [response], [_score(row[score_field], repr(score_field), where)]


def _score(value: Any, name: str, where: str) -> float:
    # bool is an int in Python, but true/false is not a score; a numeric string is
    # refused too, since it usually means a column was exported with the wrong type.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: {name} ({repr(value)[:40]}) is not a number")
    try:
        score = float(value)
    except OverflowError:  # an integer literal too large for a float
        score = math.inf
    # json reads NaN, Infinity and 1e400 (as inf) without complaint.
    if not math.isfinite(score):
        raise DataError(f"{where}: {name} is {repr(value)[:40]}; scores must be finite")
    return score


def split_groups(
    n_groups: int, heldout_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 group indices (train, held-out), from a generator seeded by ``seed``
    alone (not the global RNG), so the same seed always gives the same split.

    Held-out gets ``round(n_groups * heldout_fraction)`` groups (Python's round: halves
    go to the even number), clamped to [1, n_groups - 1] when n_groups >= 2 so neither
    side is empty. With one group it goes to train; with none both are empty."""
    if isinstance(n_groups, bool) or not isinstance(n_groups, int | np.integer) or n_groups < 0:
        raise ValueError(f"n_groups must be a non-negative integer, got {n_groups!r}")
    ok = isinstance(heldout_fraction, int | float) and not isinstance(heldout_fraction, bool)
    if not (ok and 0.0 <= heldout_fraction <= 1.0):  # also refuses NaN
        raise ConfigError(f"heldout_fraction must be in [0, 1], got {heldout_fraction!r}")
    n = int(n_groups)
    k = round(n * heldout_fraction)
    k = min(max(k, 1), n - 1) if n >= 2 else 0
    order = np.random.default_rng(seed).permutation(n)
    heldout = np.sort(order[:k]).astype(np.int64)
    train = np.sort(order[k:]).astype(np.int64)
    return train, heldout


def summary_line(data: ScoredData) -> str:
    """One line for the log, e.g. ``[data] f.jsonl: 5 prompts, 14 responses (1 empty),
    12 pairs with different scores``."""
    return (
        f"[data] {data.path}: {data.n_groups} prompts, {data.n_responses} responses "
        f"({data.n_empty} empty), {len(data.pairs())} pairs with different scores"
    )
