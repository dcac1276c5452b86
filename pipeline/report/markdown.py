"""Markdown pieces of ``summary.md``: fixed-point numbers, GitHub tables and the line that
says whether a table holds stand-in results."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

DIGITS = 3  # every reward, KL and area in summary.md


def num(value: float, digits: int = DIGITS) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def integer(value: float) -> str:
    return "–" if pd.isna(value) else str(int(round(value)))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 0) -> str:
    """A GitHub Markdown table; the last ``right`` columns are right-aligned (numbers)."""
    n = len(header)
    if any(len(row) != n for row in rows):
        raise ValueError("every row needs one cell per header column")
    align = ["---"] * (n - right) + ["---:"] * right

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(align)] + [line(row) for row in rows])


def provenance(runs: pd.DataFrame) -> str:
    return _scale_provenance(runs) + _model_provenance(runs)


def _model_provenance(runs: pd.DataFrame) -> str:
    """Which model and precision made the rows, when the table records them (a table of
    the embedded model in fp32 does not)."""
    parts = []
    for column in ("base_model", "precision"):
        values = sorted({str(v) for v in runs.get(column, pd.Series(dtype=object)).dropna()})
        if values:
            parts.append(f"{column} " + ", ".join(f"`{v}`" for v in values))
    return (" Made with " + "; ".join(parts) + ".") if parts else ""


def _scale_provenance(runs: pd.DataFrame) -> str:
    scales = sorted({str(s) for s in runs.get("scale", pd.Series(dtype=object)).dropna()})
    scale_text = ", ".join(f"`{s}`" for s in scales) or "not recorded"
    if "stand_in" not in runs.columns or runs["stand_in"].isna().all():
        return f"Scale: {scale_text}; whether these are stand-in results is not recorded."
    flags = runs["stand_in"].dropna().map(lambda v: str(v).strip().lower() in ("true", "1"))
    if flags.all():
        return (
            f"Results of the **embedded stand-in** (`stand_in = True`), scale {scale_text}: "
            "not the paper's setting."
        )
    if not flags.any():
        return f"Results not from the stand-in (`stand_in = False`), scale {scale_text}."
    return f"Mixed table: some rows from the embedded stand-in, some not; scales {scale_text}."
