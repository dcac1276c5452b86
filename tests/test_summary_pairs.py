"""Summarization pairs from 1-7 ratings: every pair of a post's summaries with different
ratings, once, the higher-rated one chosen, checked against a brute-force count made
straight from the fixture's JSON (posts of 1, 2, 3 and 5 summaries, tied ratings and a
summary rated twice)."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict

import numpy as np

from pipeline.corpora.tldr import feedback_ratings, rating_groups
from pipeline.math.pairing import all_pairs
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "feedback_axis.jsonl"


def brute_force_pairs() -> set[tuple[str, str, str]]:
    """(post id, higher-rated text, lower-rated text) for every unordered pair of a post's
    distinct summaries whose mean ratings differ, from the raw JSON and itertools alone."""
    ratings: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for line in FIXTURE.read_text().splitlines():
        row = json.loads(line)
        ratings[row["info"]["id"]][row["summary"]["text"]].append(row["summary"]["axes"]["overall"])
    out = set()
    for post, by_text in ratings.items():
        mean = {text: sum(r) / len(r) for text, r in by_text.items()}
        for x, y in itertools.combinations(mean, 2):
            if mean[x] != mean[y]:
                out.add((post, x, y) if mean[x] > mean[y] else (post, y, x))
    return out


def test_fixture_has_the_shapes_the_test_needs() -> None:
    # Guards the fixture: without these shapes the counts below would prove less.
    posts, summaries, ratings = rating_groups(feedback_ratings(str(FIXTURE)))
    sizes = {p["id"]: len(s) for p, s in zip(posts, summaries, strict=True)}
    assert sorted(sizes.values()) == [1, 2, 3, 5, 5]
    assert ratings.shape == (5, 5)
    assert np.isnan(ratings).sum() == 4 + 3 + 2  # padding of the 1-, 2- and 3-summary posts
    lines = FIXTURE.read_text().splitlines()
    assert len(lines) == 17 and sum(sizes.values()) == 16  # one summary is rated twice


def test_pair_count_matches_an_independent_count() -> None:
    posts, summaries, ratings = rating_groups(feedback_ratings(str(FIXTURE)))
    pairs = all_pairs(ratings)
    expected = brute_force_pairs()
    assert len(pairs) == len(expected) == 17  # 0 + 0 + 2 + 9 + 6, worked by hand too

    got = [
        (posts[p]["id"], summaries[p][chosen], summaries[p][rejected])
        for p, chosen, rejected in pairs.tolist()
    ]
    assert set(got) == expected  # every pair, the higher rating as chosen
    unordered = {(post, frozenset((a, b))) for post, a, b in got}
    assert len(unordered) == len(got)  # each unordered pair once, never both ways
    for p, chosen, rejected in pairs.tolist():
        assert ratings[p, chosen] > ratings[p, rejected]


def test_duplicate_ratings_are_averaged() -> None:
    posts, summaries, ratings = rating_groups(feedback_ratings(str(FIXTURE)))
    p = [x["id"] for x in posts].index("t3_five")
    assert ratings[p, summaries[p].index("roommate problem")] == 3.0  # rated 2 and 4
    assert summaries[p].count("roommate problem") == 1
