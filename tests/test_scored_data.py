"""Unit tests for pipeline.corpora.scored_files: the custom task's scored JSONL reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.corpora.scored_files import (
    ScoredData,
    ragged_pairs,
    read_scored,
    split_groups,
    summary_line,
)
from pipeline.infra.errors import ConfigError, DataError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FLAT = FIXTURES / "custom_flat.jsonl"
GROUPED = FIXTURES / "custom_grouped.jsonl"
FIELDS = FIXTURES / "custom_fields.jsonl"
FIELD_NAMES = {
    "prompt_field": "question",
    "response_field": "answer",
    "responses_field": "answers",
    "score_field": "rating",
    "scores_field": "ratings",
}


def _independent_counts(
    path: Path,
    prompt: str = "prompt",
    text: str = "text",
    texts: str = "responses",
    score: str = "reward",
    scores: str = "scores",
) -> tuple[int, int, int, int]:
    """(groups, responses, empty, pairs) from the raw lines with plain loops, sharing no
    code with the module under test."""
    by_prompt: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if texts in row:
            items = list(zip(row[texts], row[scores], strict=True))
        else:
            items = [(row[text], row[score])]
        by_prompt.setdefault(row[prompt], []).extend(items)
    n_responses = sum(len(v) for v in by_prompt.values())
    n_empty = sum(1 for v in by_prompt.values() for t, _ in v if t == "")
    n_pairs = 0
    for v in by_prompt.values():
        for i in range(len(v)):
            for j in range(i + 1, len(v)):
                if v[i][1] != v[j][1]:
                    n_pairs += 1
    return len(by_prompt), n_responses, n_empty, n_pairs


def _counts(data: ScoredData) -> tuple[int, int, int, int]:
    return data.n_groups, data.n_responses, data.n_empty, len(data.pairs())


# ---- fixtures: counts, order, pairs -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kwargs", "expected"),
    [
        (FLAT, {}, (6, 15, 1, 12)),
        (GROUPED, {}, (5, 17, 1, 21)),
        (FIELDS, FIELD_NAMES, (3, 8, 0, 7)),
    ],
    ids=["flat", "grouped", "fields"],
)
def test_fixture_counts_match_an_independent_count(path, kwargs, expected):
    data = read_scored(path, **kwargs)
    independent = _independent_counts(
        path,
        **(
            {
                "prompt": "question",
                "text": "answer",
                "texts": "answers",
                "score": "rating",
                "scores": "ratings",
            }
            if kwargs
            else {}
        ),
    )
    # The hand-counted numbers guard against both counts being wrong the same way.
    assert independent == expected
    assert _counts(data) == expected


def test_flat_groups_gather_non_contiguous_rows_in_file_order():
    data = read_scored(FLAT)
    assert [g.prompt for g in data.groups] == [
        "The film",
        "This movie",
        "The story",
        "The cast",
        "The script",
        "The ending",
    ]
    sizes = [len(g.responses) for g in data.groups]
    assert sizes == [3, 2, 4, 1, 3, 2]
    story = data.groups[2]
    assert story.responses == [" is brilliant.", "", " is clumsy and dull.", " is delightful."]
    assert story.scores == [0.88, 0.5, 0.1, 0.7]
    # Line 8 is blank, so the lines after it keep their real numbers.
    assert story.lines == [3, 7, 12, 16]
    assert data.groups[0].lines == [1, 4, 13]
    assert all(isinstance(s, float) for g in data.groups for s in g.scores)


def test_grouped_rows_share_their_line_number():
    data = read_scored(GROUPED)
    assert [len(g.responses) for g in data.groups] == [2, 3, 4, 3, 5]
    assert data.groups[2].lines == [3, 3, 3, 3]
    assert data.groups[2].responses[1] == ""
    assert data.groups[4].scores == [1.0, 2.0, 3.0, 3.0, 5.0]


def test_a_single_response_group_is_kept_but_gives_no_pair():
    data = read_scored(FLAT)
    cast = [k for k, g in enumerate(data.groups) if g.prompt == "The cast"]
    assert len(cast) == 1 and len(data.groups[cast[0]].responses) == 1
    assert cast[0] not in set(data.pairs()[:, 0].tolist())


@pytest.mark.parametrize("path", [FLAT, GROUPED])
def test_chosen_scores_higher_and_ties_form_no_pair(path):
    data = read_scored(path)
    pairs = data.pairs()
    assert pairs.dtype == np.int64 and pairs.shape[1] == 3
    seen = set()
    for g, c, r in pairs.tolist():
        scores = data.groups[g].scores
        assert scores[c] > scores[r]
        seen.add((g, min(c, r), max(c, r)))
    assert len(seen) == len(pairs)  # each unordered pair once
    # Every tied pair in the data is absent.
    for g, group in enumerate(data.groups):
        s = group.scores
        for i in range(len(s)):
            for j in range(i + 1, len(s)):
                if s[i] == s[j]:
                    assert (g, i, j) not in seen
    # Deterministic order: by group, then by the pair's (i, j).
    keys = [(g, min(c, r), max(c, r)) for g, c, r in pairs.tolist()]
    assert keys == sorted(keys)


def test_ties_in_the_fixtures_are_really_skipped():
    flat = read_scored(FLAT)
    ending = next(k for k, g in enumerate(flat.groups) if g.prompt == "The ending")
    assert ending not in set(flat.pairs()[:, 0].tolist())  # 0.5 vs 0.5
    grouped = read_scored(GROUPED)
    soundtrack = [p for p in grouped.pairs().tolist() if p[0] == 1]
    assert sorted(soundtrack) == [[1, 0, 1], [1, 2, 1]]  # 0.9 == 0.9 is no pair


def test_ragged_pairs_of_no_groups_and_of_an_empty_score_list():
    assert ragged_pairs([]).shape == (0, 3)
    assert ragged_pairs([[1.0], [2.0, 1.0]]).tolist() == [[1, 0, 1]]


def test_mixed_layouts_in_one_file_merge_by_prompt(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"prompt": "p", "text": "a", "reward": 1},
        {"prompt": "q", "responses": ["x", "y"], "scores": [0, 1]},
        {"prompt": "p", "responses": ["b", "c"], "scores": [2, 0.5]},
        {"prompt": "p", "text": "d", "reward": -1},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = read_scored(path)
    assert [g.prompt for g in data.groups] == ["p", "q"]
    assert data.groups[0].responses == ["a", "b", "c", "d"]
    assert data.groups[0].lines == [1, 3, 3, 4]
    assert _counts(data) == (2, 6, 0, 7)


def test_prompts_group_by_exact_string(tmp_path):
    path = tmp_path / "exact.jsonl"
    rows = [
        {"prompt": "Hi", "text": "a", "reward": 1},
        {"prompt": "Hi ", "text": "b", "reward": 2},
        {"prompt": "hi", "text": "c", "reward": 3},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_scored(path).n_groups == 3


def test_field_name_arguments():
    data = read_scored(FIELDS, **FIELD_NAMES)
    funny = data.groups[0]
    assert funny.prompt == "Is it funny?"
    assert funny.responses == [" Very.", " Not at all.", " Somewhat.", " Hilarious."]
    assert funny.scores == [3.0, 1.0, 2.0, 3.0]
    assert funny.lines == [1, 3, 4, 4]
    # With the default names the renamed file has no field the reader knows.
    with pytest.raises(DataError, match=r"custom_fields\.jsonl line 1: missing field 'prompt'"):
        read_scored(FIELDS)


def test_coinciding_field_names_are_a_config_error():
    with pytest.raises(ConfigError):
        read_scored(FLAT, response_field="responses")
    with pytest.raises(ConfigError):
        read_scored(FLAT, prompt_field="text")


def test_summary_line():
    line = summary_line(read_scored(FLAT))
    assert line == (
        f"[data] {FLAT}: 6 prompts, 15 responses (1 empty), 12 pairs with different scores"
    )


# ---- malformed input: DataError naming the file and the first bad line -------------------

GOOD_FLAT = '{"prompt": "p", "text": "a", "reward": 1.0}'
GOOD_GROUPED = '{"prompt": "p", "responses": ["a", "b"], "scores": [1, 2]}'

BAD_LINES = {
    "not json": ("{not json", "not valid JSON"),
    "truncated json": ('{"prompt": "p", "text": "a"', "not valid JSON"),
    "json list": ('["p", "a", 1]', "expected a JSON object, got list"),
    "json string": ('"just text"', "expected a JSON object, got str"),
    "json number": ("3", "expected a JSON object, got int"),
    "missing prompt": ('{"text": "a", "reward": 1}', "missing field 'prompt'"),
    "missing response": ('{"prompt": "p", "reward": 1}', "missing field 'responses'"),
    "missing reward": ('{"prompt": "p", "text": "a"}', "missing field 'reward'"),
    "missing scores": ('{"prompt": "p", "responses": ["a"]}', "missing field 'scores'"),
    "prompt number": ('{"prompt": 5, "text": "a", "reward": 1}', "'prompt' must be a string"),
    "prompt null": ('{"prompt": null, "text": "a", "reward": 1}', "'prompt' must be a string"),
    "prompt list": ('{"prompt": ["p"], "text": "a", "reward": 1}', "'prompt' must be a string"),
    "prompt empty": ('{"prompt": "", "text": "a", "reward": 1}', "'prompt' is empty"),
    "response number": ('{"prompt": "p", "text": 3, "reward": 1}', "'text' must be a string"),
    "response null": ('{"prompt": "p", "text": null, "reward": 1}', "'text' must be a string"),
    "grouped response number": (
        '{"prompt": "p", "responses": ["a", 2], "scores": [1, 2]}',
        "'responses'[1] must be a string",
    ),
    "responses not list": (
        '{"prompt": "p", "responses": "a", "scores": [1]}',
        "'responses' must be a list",
    ),
    "scores not list": (
        '{"prompt": "p", "responses": ["a"], "scores": 1}',
        "'scores' must be a list",
    ),
    "responses empty": ('{"prompt": "p", "responses": [], "scores": []}', "empty list"),
    "length mismatch": (
        '{"prompt": "p", "responses": ["a", "b"], "scores": [1]}',
        "2 'responses' but 1 'scores'",
    ),
    "score bool": ('{"prompt": "p", "text": "a", "reward": true}', "is not a number"),
    "score string": ('{"prompt": "p", "text": "a", "reward": "1.5"}', "is not a number"),
    "score null": ('{"prompt": "p", "text": "a", "reward": null}', "is not a number"),
    "score nan": ('{"prompt": "p", "text": "a", "reward": NaN}', "must be finite"),
    "score inf": ('{"prompt": "p", "text": "a", "reward": Infinity}', "must be finite"),
    "score -inf": ('{"prompt": "p", "text": "a", "reward": -Infinity}', "must be finite"),
    "score 1e400": ('{"prompt": "p", "text": "a", "reward": 1e400}', "must be finite"),
    "score huge int": ('{"prompt": "p", "text": "a", "reward": ' + "9" * 400 + "}", "finite"),
    "grouped score bool": (
        '{"prompt": "p", "responses": ["a", "b"], "scores": [1, false]}',
        "'scores'[1] (False) is not a number",
    ),
    "grouped score nan": (
        '{"prompt": "p", "responses": ["a", "b"], "scores": [NaN, 1]}',
        "'scores'[0] is nan",
    ),
    "both layouts": (
        '{"prompt": "p", "text": "a", "reward": 1, "responses": ["b"], "scores": [1]}',
        "use one layout per line",
    ),
}


@pytest.mark.parametrize(("line", "message"), BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_bad_line_names_the_file_and_its_line(tmp_path, line, message):
    path = tmp_path / "scored_bad.jsonl"
    # Good lines of both layouts and a blank line before the bad one, a bad line after:
    # the reported number is the file's line (5), counting the blank line, and the
    # error is the first bad line's.
    path.write_text("\n".join([GOOD_FLAT, GOOD_GROUPED, "", GOOD_FLAT, line, "{oops"]) + "\n")
    with pytest.raises(DataError) as e:
        read_scored(path)
    text = str(e.value)
    assert "scored_bad.jsonl line 5:" in text
    assert message in text


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD_FLAT.encode() + b"\n" + '{"prompt": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.jsonl line 2: not UTF-8"):
        read_scored(path)


def test_a_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_FLAT.encode() + b"\n")
    assert read_scored(path).n_responses == 1


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothing.jsonl does not exist"):
        read_scored(tmp_path / "nothing.jsonl")


def test_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match="is not a file"):
        read_scored(tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n   \n"], ids=["empty", "blank lines"])
def test_a_file_with_no_rows(tmp_path, content):
    path = tmp_path / "norows.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=r"norows\.jsonl has no rows"):
        read_scored(path)


def test_empty_responses_are_kept_and_counted(tmp_path):
    path = tmp_path / "empties.jsonl"
    rows = [
        {"prompt": "p", "text": "", "reward": 0},
        {"prompt": "p", "responses": ["", " ", "x"], "scores": [1, 2, 3]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = read_scored(path)
    assert data.groups[0].responses == ["", "", " ", "x"]
    assert data.n_empty == 2  # " " is text, not an empty response
    assert len(data.pairs()) == 6


# ---- split_groups ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 10, 37, 200])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_split_is_a_disjoint_cover_of_the_right_size(n, fraction):
    train, heldout = split_groups(n, fraction, seed=3)
    assert train.dtype == np.int64 and heldout.dtype == np.int64
    assert set(train.tolist()).isdisjoint(heldout.tolist())
    assert sorted(train.tolist() + heldout.tolist()) == list(range(n))
    assert len(heldout) == min(max(round(n * fraction), 1), n - 1)
    assert len(train) >= 1 and len(heldout) >= 1


def test_split_is_deterministic_for_a_seed_and_ignores_global_rng():
    np.random.seed(0)
    a = split_groups(50, 0.2, seed=7)
    np.random.seed(12345)
    np.random.random(100)
    b = split_groups(50, 0.2, seed=7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = split_groups(50, 0.2, seed=8)
    assert not np.array_equal(a[1], c[1])


def test_split_of_zero_or_one_group():
    train, heldout = split_groups(0, 0.2, seed=0)
    assert len(train) == 0 and len(heldout) == 0
    train, heldout = split_groups(1, 0.5, seed=0)
    assert train.tolist() == [0] and len(heldout) == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), True])
def test_split_refuses_a_bad_fraction(fraction):
    with pytest.raises(ConfigError):
        split_groups(10, fraction, seed=0)


def test_a_list_under_the_flat_field_names_is_a_group(tmp_path: Path) -> None:
    path = tmp_path / "renamed.jsonl"
    path.write_text(
        '{"q": "p", "answers": ["a", "", "c"], "rating": [1, 2, 2]}\n'
        '{"q": "p", "answers": "d", "rating": 0.5}\n'
    )
    data = read_scored(path, prompt_field="q", response_field="answers", score_field="rating")
    assert data.n_groups == 1 and data.n_responses == 4 and data.n_empty == 1
    assert data.groups[0].scores == [1.0, 2.0, 2.0, 0.5]
    assert len(data.pairs()) == 5  # 6 pairs less the one tie (2, 2)
