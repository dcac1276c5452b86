"""The judges: Wilson intervals against hand-worked numbers, the offline judge, and
``judge=openai`` driven over real HTTP against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.infra.errors import ConfigError
from pipeline.math.stats import wilson
from pipeline.scoring import judges, llm_judge
from pipeline.scoring.judges import OfflineJudge
from pipeline.scoring.llm_judge import JudgeError, OpenAIJudge, parse_label
from pipeline.scoring.rater import SummaryRater
from pipeline.scoring.verdicts import Comparison

# ---- Wilson interval ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wins", "n", "low", "high"),
    [
        # Worked with the equivalent closed form (2w + z^2 -+ z sqrt(z^2 + 4w(n-w)/n)) /
        # (2(n + z^2)), z^2 = 3.841459, not the centre/half-width form the code uses.
        # 5/10: (13.841459 -+ 1.959964 * sqrt(13.841459)) / 27.682918
        #     = (13.841459 -+ 7.291872) / 27.682918
        (5, 10, 0.236593, 0.763407),
        # 0/10: low is 0; high = 2 z^2 / (2(n + z^2)) = 3.841459 / 13.841459.
        (0, 10, 0.0, 0.277533),
        # 10/10: the mirror image of 0/10.
        (10, 10, 0.722467, 1.0),
        # 81/263: 4w(n-w)/n = 224.212928; (165.841459 -+ 1.959964 * sqrt(228.054387))
        #     / 533.682918 = (165.841459 -+ 29.598318) / 533.682918
        (81, 263, 0.255289, 0.366210),
    ],
)
def test_wilson_matches_hand_worked_numbers(wins: int, n: int, low: float, high: float) -> None:
    got = wilson(wins, n)
    assert got == pytest.approx((low, high), abs=2e-6)


def test_wilson_empty_and_invalid() -> None:
    assert all(math.isnan(x) for x in wilson(0, 0))
    for wins, n in [(-1, 3), (4, 3), (0, -1)]:
        with pytest.raises(ValueError):
            wilson(wins, n)


def test_parse_label_is_strict() -> None:
    for ok, label in [("A", "A"), (" B\n", "B"), ("A.", "A"), ("  B. ", "B")]:
        assert parse_label(ok) == label
    for bad in ["", "a", "A..", "AB", "A or B", "Summary A", "A is better.", "**A**", "1"]:
        assert parse_label(bad) is None, bad


def test_registry() -> None:
    assert judges.get("offline") is OfflineJudge
    assert judges.get("openai") is OpenAIJudge
    with pytest.raises(ConfigError, match="judge='gpt'"):
        judges.get("gpt")


# ---- offline --------------------------------------------------------------------------------

ARTICLE = (
    "The city council of Lowmoor approved a new flood barrier on the river Esk on Monday "
    "after two winters of flooding damaged hundreds of homes in the town centre. The barrier "
    "will cost four million pounds and should be finished by next spring, council leader "
    "Jane Hart said. Residents had campaigned for flood defences since the river burst its "
    "banks."
)
CORPUS = [
    ARTICLE,
    "A new bridge over the river was approved by the council after residents campaigned.",
    "The town centre was damaged by flooding and hundreds of homes were hit on Monday.",
    "Council leader said the flood barrier would protect homes from the river next winter.",
]


def test_offline_judge_wins_ties_and_counts() -> None:
    judge = OfflineJudge(SummaryRater(CORPUS))
    good = "Lowmoor council approved a flood barrier for the river Esk after flooding hit homes."
    items = [
        Comparison("better", ARTICLE, good, "Residents like football."),
        Comparison("worse", ARTICLE, "football football football football", good),
        Comparison("tie", ARTICLE, good, good),  # equal scores: counted as a loss
    ]
    report = judge.compare(items)
    assert [v.model_wins for v in report.verdicts] == [True, False, False]
    assert report.ties == 1 and report.unparseable == 0
    counts = report.counts()
    assert (counts["wins"], counts["n"], counts["calls"], counts["cached"]) == (1, 3, 0, 0)
    assert (counts["ci_low"], counts["ci_high"]) == wilson(1, 3)


# ---- a fake OpenAI-compatible endpoint --------------------------------------------------------
# The fake judge prefers the summary containing GOOD and answers its label. Markers in the
# document script failures: RATE_LIMIT (one 429 first), SERVER_ERROR (one 500 first),
# ALWAYS_500 (500 every time), MALFORMED (a sentence, not a label), EMPTY (no content).


class FakeEndpoint:
    def __init__(self) -> None:
        self.requests: list[dict] = []  # every POST, failures included
        self.auth: set[str] = set()
        self.failed: Counter[str] = Counter()
        self.in_flight = self.most_in_flight = 0
        self.delay_s = 0.0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.requests.append(body)
                    endpoint.auth.add(self.headers.get("Authorization", ""))
                    endpoint.in_flight += 1
                    endpoint.most_in_flight = max(endpoint.most_in_flight, endpoint.in_flight)
                time.sleep(endpoint.delay_s)
                status, payload = endpoint.answer(self.path, body)
                with endpoint.lock:
                    endpoint.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass  # quiet test output

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}
        user = body["messages"][-1]["content"]
        with self.lock:
            for marker, status in (("RATE_LIMIT", 429), ("SERVER_ERROR", 500)):
                if marker in user and not self.failed[user + marker]:
                    self.failed[user + marker] += 1
                    return status, {"error": {"message": "try again", "type": marker}}
        if "ALWAYS_500" in user:
            return 500, {"error": {"message": "down"}}
        a_part = user.split("Summary A:")[1].split("Summary B:")[0]
        content: str | None = "A" if "GOOD" in a_part else "B."
        if "MALFORMED" in user:
            content = "I think summary A is better."
        if "EMPTY" in user:
            content = None
        return 200, {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEndpoint]:
    fake = FakeEndpoint()
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # the fake server is reached directly
    fake.key = key  # type: ignore[attr-defined]
    yield fake
    fake.close()


def items(n: int, markers: dict[int, str] | None = None) -> list[Comparison]:
    """n comparisons; the model's summary is the GOOD one for even i."""
    out = []
    for i in range(n):
        good, bad = f"GOOD summary {i}", f"weak summary {i}"
        model, human = (good, bad) if i % 2 == 0 else (bad, good)
        doc = f"Document {i}. {(markers or {}).get(i, '')}".strip()
        out.append(Comparison(f"item-{i}", doc, model, human))
    return out


def make_judge(tmp_path: Path, lines: list, endpoint: FakeEndpoint, **kw: object) -> OpenAIJudge:
    # echo records the server's request count when each line is printed.
    def echo(line: str) -> None:
        lines.append((line, len(endpoint.requests)))

    params = {"concurrency": 3, "backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 10.0}
    return OpenAIJudge(tmp_path / "judge-cache", echo=echo, **{**params, **kw})  # type: ignore[arg-type]


def test_openai_judge_over_http(
    tmp_path: Path, endpoint: FakeEndpoint, capfd: pytest.CaptureFixture[str]
) -> None:
    batch = items(12, {3: "RATE_LIMIT", 4: "SERVER_ERROR", 5: "MALFORMED", 6: "EMPTY"})
    lines: list = []
    judge = make_judge(tmp_path, lines, endpoint)
    report = judge.compare(batch)

    # The count is printed before the first request reaches the server.
    assert lines[0] == (
        "judge openai: 12 comparisons, 0 cached, 12 calls to gpt-4 at concurrency 3",
        0,
    )
    # One 429 and one 500, each retried once: 12 answers from 14 requests.
    assert (report.calls, report.cached, report.retries) == (12, 0, 2)
    assert len(endpoint.requests) == 14
    assert all(r["model"] == "gpt-4" and r["temperature"] == 0.0 for r in endpoint.requests)

    # Unparseable answers are reported, never guessed; everything else is mapped back to
    # the model whatever position it was shown in.
    verdicts = {v.id: v for v in report.verdicts}
    assert verdicts["item-5"].model_wins is None
    assert verdicts["item-5"].answer == "I think summary A is better."
    assert verdicts["item-6"].model_wins is None and verdicts["item-6"].answer == ""
    assert report.unparseable == 2
    for i in (0, 1, 2, 3, 4, 7, 8, 9, 10, 11):
        assert verdicts[f"item-{i}"].model_wins is (i % 2 == 0), i
    assert (report.wins, report.n) == (5, 10)

    # Position randomisation: both orders occur, and the one recorded is the one sent.
    firsts = [v.model_first for v in report.verdicts]
    assert True in firsts and False in firsts
    for item, first in zip(batch, firsts, strict=True):
        user = next(
            c
            for r in endpoint.requests
            if f"Article:\n{item.document}\n" in (c := r["messages"][-1]["content"])
        )
        shown_a = user.split("Summary A:\n")[1].split("\n")[0]
        assert shown_a == (item.model_summary if first else item.human_summary)
    # Deterministic in the seed: the same orders again, another seed gives others.
    assert [judge.request(it)[1] for it in batch] == firsts
    other = make_judge(tmp_path, [], endpoint, seed=1)
    assert [other.request(it)[1] for it in batch] != firsts

    # One cache file per distinct request, named by the request's hash.
    files = sorted((tmp_path / "judge-cache").glob("*.json"))
    assert len(files) == 12
    for f in files:
        entry = json.loads(f.read_text())
        assert set(entry) == {"request", "answer"}
        assert f.stem == llm_judge.stable_hash(entry["request"])

    # A second run asks nothing and gives the same verdicts.
    before = len(endpoint.requests)
    lines2: list = []
    again = make_judge(tmp_path, lines2, endpoint).compare(batch)
    assert len(endpoint.requests) == before
    assert (again.calls, again.cached, again.retries) == (0, 12, 0)
    assert again.verdicts == report.verdicts
    assert (
        lines2[0][0] == "judge openai: 12 comparisons, 12 cached, 0 calls to gpt-4 at concurrency 3"
    )

    # The key reached the server, and nothing else: not the cache, not the output.
    key = endpoint.key  # type: ignore[attr-defined]
    assert endpoint.auth == {f"Bearer {key}"}
    out, err = capfd.readouterr()
    printed = "\n".join(line for line, _ in lines + lines2) + out + err
    assert key not in printed
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaks == []


def test_cached_run_needs_no_key(tmp_path: Path, endpoint: FakeEndpoint, monkeypatch) -> None:
    batch = items(4)
    make_judge(tmp_path, [], endpoint).compare(batch)
    monkeypatch.delenv("OPENAI_API_KEY")
    report = make_judge(tmp_path, [], endpoint).compare(batch)
    assert report.cached == 4 and report.calls == 0
    # A new item needs a call, and so the key: refused before any request is made.
    before = len(endpoint.requests)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_judge(tmp_path, [], endpoint).compare(items(5))
    assert len(endpoint.requests) == before


def test_gives_up_after_max_retries_keeping_answers(tmp_path: Path, endpoint: FakeEndpoint) -> None:
    batch = items(4, {2: "ALWAYS_500"})
    judge = make_judge(tmp_path, [], endpoint, max_retries=2, concurrency=1)
    with pytest.raises(JudgeError, match="after 2 retries"):
        judge.compare(batch)
    assert sum("ALWAYS_500" in r["messages"][-1]["content"] for r in endpoint.requests) == 3
    # What was answered before the failure is cached; only the failing item is asked again.
    answered = len(list((tmp_path / "judge-cache").glob("*.json")))
    assert answered >= 2
    lines: list = []
    with pytest.raises(JudgeError):
        make_judge(tmp_path, lines, endpoint, max_retries=0).compare(batch)
    assert f"{answered} cached, {4 - answered} calls" in lines[0][0]


def test_client_errors_are_not_retried(
    tmp_path: Path, endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", endpoint.url.replace("/v1", "/wrong"))  # 404
    with pytest.raises(JudgeError, match="HTTP 404") as caught:
        make_judge(tmp_path, [], endpoint).compare(items(1))
    assert len(endpoint.requests) == 1
    assert endpoint.key not in str(caught.value)  # type: ignore[attr-defined]


def test_concurrency_limit(tmp_path: Path, endpoint: FakeEndpoint) -> None:
    endpoint.delay_s = 0.1  # slow answers, so requests overlap when they may
    make_judge(tmp_path, [], endpoint, concurrency=2).compare(items(6))
    assert endpoint.most_in_flight == 2


def test_config_is_validated(tmp_path: Path) -> None:
    for key, value in [("concurrency", 0), ("seed", -1), ("max_retries", -1), ("model", " ")]:
        with pytest.raises(ConfigError, match=f"judge.{key}="):
            OpenAIJudge(tmp_path, **{key: value})  # type: ignore[arg-type]
