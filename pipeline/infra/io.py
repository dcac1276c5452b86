"""Small file helpers shared by the stages and the data readers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.infra.atomic import atomic_write_text
from pipeline.infra.errors import DataError


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def json_objects(lines: Iterable[bytes | str], where: object) -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) of every non-blank line of a JSONL source; a line that
    is not UTF-8, not JSON or not an object is a DataError naming ``where`` and the line."""
    for n, raw in enumerate(lines, start=1):
        try:
            # Editors on Windows often save UTF-8 with a BOM; json refuses it.
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise DataError(f"{where} line {n}: not UTF-8 text") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where} line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where} line {n}: expected a JSON object, got {type(row).__name__}")
        yield n, row


def iter_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """(line number, row) of every non-blank line; a malformed line is an error
    naming the file and line."""
    with open(path, "rb") as f:
        for n, row in json_objects(f, path):
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(f"{path} line {n}: missing field(s) {missing}")
            yield n, row


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a JSONL file; a malformed line is an error naming the file and line."""
    return [row for _, row in iter_jsonl(path, required)]


def save_arrays(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
