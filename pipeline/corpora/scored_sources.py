"""Where scored rows come from: a local file, a ``datasets`` folder, or a hub name.

Files by extension: ``.jsonl`` (and ``.jsonl.gz``) line by line with the standard
library (the fast path; numbers count lines, blank ones included), ``.json`` (a JSON
array of objects, or JSON lines), ``.csv`` (pandas; an empty cell is "" in a text column
and missing in a number column) and ``.parquet`` (pyarrow, the library under ``datasets``).
A folder is one written by ``Dataset.save_to_disk`` (``datasets.load_from_disk``; a
``DatasetDict`` gives ``data.split``). ``data.hf_name`` goes through
``datasets.load_dataset`` with ``data.split`` and ``data.revision``, refused offline.
Rows other than JSONL lines are numbered from 1."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.infra.errors import ConfigError, DataError, first_line
from pipeline.infra.hub import require_dataset
from pipeline.infra.io import json_objects

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".parquet")


@dataclass
class Source:
    """A scored data source: ``label`` names it in messages, ``unit`` is "line" or "row"."""

    label: Path | str
    unit: str
    _rows: Any  # a callable giving an iterator of (number, row)

    def rows(self) -> Iterator[tuple[int, dict]]:
        return self._rows()

    def where(self, n: int) -> str:
        return f"{self.label} {self.unit} {n}"


def open_source(
    path: str | Path | None = None,
    hf_name: str | None = None,
    split: str = "train",
    revision: str | None = None,
) -> Source:
    """The source ``path`` or ``hf_name`` names (exactly one of them)."""
    if (path is None) == (hf_name is None):
        raise ConfigError(
            "set exactly one of data.path (a file or a datasets folder) and data.hf_name"
        )
    if hf_name is not None:
        return _hub(hf_name, split, revision)
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_dir():
        return Source(path, "row", lambda: _numbered(_saved(path, split)))
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    name = path.name.lower()
    if name.endswith(".jsonl.gz"):
        return Source(path, "line", lambda: _jsonl(path, gzip.open))
    suffix = path.suffix.lower()
    if suffix == ".json":
        return Source(path, "row", lambda: _json(path))
    if suffix == ".csv":
        return Source(path, "row", lambda: _numbered(_csv(path)))
    if suffix == ".parquet":
        return Source(path, "row", lambda: _numbered(_parquet(path)))
    # Anything else is read as JSON lines, as before (a .txt or extension-less export).
    return Source(path, "line", lambda: _jsonl(path, open))


def fingerprint(path: str | Path) -> list:
    """What identifies a file's or a folder's contents cheaply: (relative name, size,
    mtime_ns) of each file, for a cache that must notice an edit."""
    path = Path(path).expanduser()
    if not path.exists():
        return []
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for p in files:
        st = p.stat()
        out.append([str(p.relative_to(path)) if p != path else p.name, st.st_size, st.st_mtime_ns])
    return out


def _numbered(rows: list[dict]) -> Iterator[tuple[int, dict]]:
    yield from enumerate(rows, start=1)


def _jsonl(path: Path, opener) -> Iterator[tuple[int, dict]]:
    try:
        with opener(path, "rb") as f:
            yield from json_objects(f, path)
    except (OSError, EOFError) as e:  # a broken .gz
        raise DataError(f"{path}: cannot be read ({first_line(e)})") from None


def _json(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as f:
        head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):  # JSON lines in a .json file
        yield from _jsonl(path, open)
        return
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a valid JSON array ({first_line(e)})") from None
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path} row {n}: expected a JSON object, got {type(row).__name__}")
        yield n, row


def _csv(path: Path) -> list[dict]:
    import pandas as pd

    try:
        # Only an empty cell is missing: "NA" or "null" in a text column is text.
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise DataError(f"{path}: not a readable CSV file ({first_line(e)})") from None
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].astype(object).where(df[col].notna(), "")
    return df.to_dict("records")


def _parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise DataError(f"{path}: not a readable parquet file ({first_line(e)})") from None


def _saved(path: Path, split: str) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - not a saved dataset, or a broken one
        raise DataError(
            f"{path} is not a file nor a folder written by datasets' save_to_disk "
            f"({first_line(e, 120)})"
        ) from None
    return _split_rows(ds, split, str(path))


def _hub(name: str, split: str, revision: str | None) -> Source:
    require_dataset(name, "data.hf_name")
    label = f"{name}[{split}]"

    def rows() -> Iterator[tuple[int, dict]]:
        import datasets

        try:
            ds = datasets.load_dataset(name, split=split, revision=revision)
        except Exception as e:  # noqa: BLE001 - unknown name, split or revision, network
            raise ConfigError(
                f"data.hf_name={name!r} (data.split={split!r}, data.revision={revision!r}) "
                f"could not be loaded: {first_line(e, 160)}"
            ) from None
        yield from _numbered(_split_rows(ds, split, label))

    return Source(label, "row", rows)


def _split_rows(ds, split: str, where: str) -> list[dict]:
    if isinstance(ds, dict):  # a DatasetDict: one data set per split
        if split not in ds:
            raise ConfigError(
                f"data.split={split!r}: {where} has the splits {sorted(ds)}; choose one"
            )
        ds = ds[split]
    return ds.to_list()
