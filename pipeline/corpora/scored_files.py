"""A researcher's own scored preference data (the ``custom`` task, ``data.path``): the
grouped and flat layouts (``scored_layouts`` reads the others and picks among them).

Rows of prompts, responses and scores, in either (or both) of two row layouts:

* grouped, one prompt per row:
  ``{"prompt": str, "responses": [str, ...], "scores": [number, ...]}``
* flat, one response per row: ``{"prompt": str, "text": str, "reward": number}``

Rows with the same prompt (exact string) form one group wherever they are in the file,
so a flat file need not be sorted and groups may differ in size. Pairs are formed within
a group between responses with different scores, the higher-scored one chosen. Every
response is kept as given: two samples may be the same text (often "") scored apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.corpora.scored_groups import (
    Group,
    GroupBuilder,
    ScoredData,
    padded_scores,
    ragged_pairs,
    score_value,
)
from pipeline.corpora.scored_sources import Source, open_source
from pipeline.infra.errors import ConfigError, DataError

__all__ = [
    "Group",
    "ScoredData",
    "padded_scores",
    "ragged_pairs",
    "read_legacy",
    "read_scored",
    "split_groups",
    "summary_line",
]


def read_scored(
    path: str | Path,
    prompt_field: str = "prompt",
    response_field: str = "text",
    responses_field: str = "responses",
    score_field: str = "reward",
    scores_field: str = "scores",
) -> ScoredData:
    """Read a scored file (JSONL, or any format ``scored_sources`` reads); the layout
    (grouped or flat) is decided per line by which of ``responses_field`` /
    ``response_field`` the row has. The first bad line is a DataError naming the file
    and its 1-based line number."""
    fields = (prompt_field, response_field, responses_field, score_field, scores_field)
    return read_legacy(open_source(path), *fields)


def read_legacy(
    source: Source,
    prompt_field: str = "prompt",
    response_field: str = "text",
    responses_field: str = "responses",
    score_field: str = "reward",
    scores_field: str = "scores",
    transform: Callable[[float], float] = float,
) -> ScoredData:
    """``read_scored`` on an opened source, each score passed through ``transform``."""
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

    builder = GroupBuilder(source.where, source.unit, merge=False)
    n_rows = 0
    for n, row in source.rows():
        where = source.where(n)
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
            items = _grouped_row(row, responses_field, scores_field, where)
        elif flat and isinstance(row[response_field], list):
            # A list under the flat name is a group too (data.response_field=answers with
            # its scores under data.score_field, or the scores_field).
            scores_at = score_field if score_field in row else scores_field
            items = _grouped_row(row, response_field, scores_at, where)
        elif flat:
            items = _flat_row(row, response_field, score_field, where)
        else:
            raise DataError(
                f"{where}: missing field {responses_field!r} (grouped layout) or "
                f"{response_field!r} (flat layout)"
            )
        for response, score, name in items:
            builder.add(prompt, None, response, transform(score), n, name)
        n_rows += 1

    if n_rows == 0:
        raise DataError(f"{source.label} has no rows (expected one JSON object per line)")
    return ScoredData(groups=builder.groups(), path=source.label, unit=source.unit)


def _grouped_row(
    row: dict[str, Any], responses_field: str, scores_field: str, where: str
) -> list[tuple[str, float, str]]:
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
    return [
        (r, score_value(s, f"{scores_field!r}[{i}]", where), f"{responses_field!r}[{i}]")
        for i, (r, s) in enumerate(zip(responses, scores, strict=True))
    ]


def _flat_row(
    row: dict[str, Any], response_field: str, score_field: str, where: str
) -> list[tuple[str, float, str]]:
    if score_field not in row:
        raise DataError(f"{where}: missing field {score_field!r}")
    response = row[response_field]
    if not isinstance(response, str):
        raise DataError(
            f"{where}: {response_field!r} must be a string, got {type(response).__name__}"
        )
    return [
        (response, score_value(row[score_field], repr(score_field), where), repr(response_field))
    ]


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
    chat = data.n_message_groups
    return (
        f"[data] {data.path}: {data.n_groups} prompts, {data.n_responses} responses "
        f"({data.n_empty} empty), {len(data.pairs())} pairs with different scores"
    ) + (f"; {chat} prompts are chat messages" if chat else "")
