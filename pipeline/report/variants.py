"""The series of a run table, read from its ``loss`` column: how each is named, ordered and
coloured, and which loss is the baseline every other series is compared with.

No other reporting module names a loss. A series is one loss without an offset (all its
runs), or one (loss, offset function f, scale α) of a loss with an offset. Whether a loss
takes an offset is the registry's word (``pipeline.math.losses``) for a registered loss; a
table may also hold a loss the registry does not know (an older or a newer table): its
rows then say, by an offset other than "none"."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from pipeline.math.losses import LOSSES, uses_offset

BASELINE = "dpo"  # every other series is compared with this loss at matched settings
SFT = "sft"  # the ``loss`` of the SFT baseline row: the starting model, not a trained loss

BASE_STYLE = ("tab:blue", "o")  # (colour, marker) of the baseline
# Every other series, in series order, takes the next (colour, marker).
STYLES = [
    ("tab:orange", "^"),
    ("tab:green", "s"),
    ("tab:red", "D"),
    ("tab:purple", "v"),
    ("tab:brown", "P"),
    ("tab:pink", "X"),
    ("tab:olive", "*"),
]


def display(loss: object) -> str:
    """A loss as its labels write it: the name upper-cased ("dpo" -> "DPO")."""
    return str(loss).upper()


def _is_none(offset: object) -> bool:
    return offset is None or (isinstance(offset, float) and pd.isna(offset)) or offset == "none"


def takes_offset(loss: object, offsets: Iterable[object] = ()) -> bool:
    """Whether ``loss`` takes an offset (alpha and a scaling function f): the registry says
    for a registered loss; for another name, whether any of ``offsets`` (its rows' offset
    column) is something other than "none"."""
    if loss in LOSSES:
        return uses_offset(str(loss))
    return any(not _is_none(o) for o in offsets)


def series_label(loss: object, offset: object, alpha: float, single: bool = False) -> str:
    """The loss's name, and for a loss with an offset "(f=<offset>, α=<alpha>)" unless
    ``single`` (the only variant of its loss where it is drawn)."""
    if single or not takes_offset(loss, [offset]):
        return display(loss)
    return f"{display(loss)} (f={offset}, α={alpha:g})"


def series_order(loss: object, offset: object, alpha: float) -> tuple:
    """The sort key of a series: the baseline first, then the other losses by name, a
    loss's variants by f and then α."""
    if not takes_offset(loss, [offset]):
        offset, alpha = "", 0.0
    return (0 if loss == BASELINE else 1, str(loss), str(offset), float(alpha))


def with_series(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each row's series label and its sort key (columns ``series``, ``order``)."""
    keys = list(zip(df["loss"], df["offset"], df["alpha"], strict=True))
    return df.assign(
        series=[series_label(*key) for key in keys], order=[series_order(*key) for key in keys]
    )


def table_rank(loss: object) -> str:
    """The sort key of a run table's ``loss`` column: the SFT row first, then the baseline,
    then every other loss by name."""
    if loss == SFT:
        return "0"
    return "1" if loss == BASELINE else f"2{loss}"


def others(losses: Iterable[object]) -> list[str]:
    """The losses other than the baseline (and SFT), by name."""
    return sorted({str(x) for x in losses if x not in (BASELINE, SFT) and not pd.isna(x)})
