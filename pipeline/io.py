"""Small file helpers shared by the stages, and the reader of a user's samples file."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cache import atomic_write_text
from pipeline.errors import DataError


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def iter_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """(line number, row) of every non-blank line; a malformed line is an error
    naming the file and line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path} line {n}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path} line {n}: not valid JSON") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path} line {n}: expected a JSON object, got {type(row).__name__}"
                )
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(f"{path} line {n}: missing field(s) {missing}")
            yield n, row


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a JSONL file; a malformed line is an error naming the file and line."""
    return [row for _, row in iter_jsonl(path, required)]


def read_samples_file(path: str | Path) -> list[dict]:
    """Your own responses instead of sampling (config key ``samples_file``).

    One JSON object per line: ``{"prompt": str, "responses": [str, ...], "scores":
    [float, ...]}``, ``scores`` optional but then on every line. Every line needs the
    same number (>= 2) of responses, because sample sets are (n_prompts, n_samples).
    Returns ``{"line", "prompt", "responses", "scores"}`` rows (scores None when not
    given); any problem is a DataError naming the file and line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"samples_file {path} does not exist")
    rows: list[dict] = []
    for n, raw in iter_jsonl(path, required=("prompt", "responses")):
        where = f"samples_file {path} line {n}"
        prompt, responses, scores = raw["prompt"], raw["responses"], raw.get("scores")
        if not isinstance(prompt, str):
            raise DataError(f"{where}: 'prompt' must be a string, got {type(prompt).__name__}")
        if not isinstance(responses, list):
            raise DataError(f"{where}: 'responses' must be a list of strings")
        if len(responses) < 2:
            raise DataError(
                f"{where}: {len(responses)} response(s); a prompt needs at least 2 to form pairs"
            )
        for i, response in enumerate(responses):
            if not isinstance(response, str):
                raise DataError(f"{where}: response {i} is not a string")
            if not response.strip():
                raise DataError(f"{where}: response {i} is empty")
        if scores is not None:
            _check_scores(scores, len(responses), where)
        if rows:
            first = rows[0]
            if len(responses) != len(first["responses"]):
                raise DataError(
                    f"{where}: {len(responses)} responses but line {first['line']} has "
                    f"{len(first['responses'])}; every prompt needs the same number"
                )
            if (scores is None) != (first["scores"] is None):
                raise DataError(
                    f"{where}: 'scores' {'missing' if scores is None else 'given'} but "
                    f"{'given' if scores is None else 'missing'} on line {first['line']}; "
                    "give scores on every line or on none"
                )
        rows.append({"line": n, "prompt": prompt, "responses": responses, "scores": scores})
    if not rows:
        raise DataError(f"samples_file {path} is empty (expected one JSON object per line)")
    return rows


def _check_scores(scores: Any, n_responses: int, where: str) -> None:
    if not isinstance(scores, list):
        raise DataError(f"{where}: 'scores' must be a list of numbers")
    if len(scores) != n_responses:
        raise DataError(f"{where}: {len(scores)} scores for {n_responses} responses")
    for i, score in enumerate(scores):
        # bool is an int in Python, but true/false is not a score.
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise DataError(f"{where}: score {i} ({repr(score)[:40]}) is not a number")
        if not math.isfinite(score):
            raise DataError(f"{where}: score {i} is {score}; scores must be finite")


def save_arrays(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
