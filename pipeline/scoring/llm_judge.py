"""The LLM judge (``judge=openai``): an LLM (GPT-4 by default) through any
OpenAI-compatible chat-completions endpoint, with the official client. The endpoint and
key come from ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` only; the key is never written
anywhere by this module. The order of the two summaries is drawn per item, answers are
parsed strictly (an unparseable one is counted, never guessed), rate limits and server
errors are retried with back-off, and every answer is cached by the hash of its request."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.infra.cache import atomic_write_json, stable_hash
from pipeline.infra.errors import ConfigError, PipelineError
from pipeline.scoring.verdicts import Comparison, JudgeReport, Verdict

LABELS = ("A", "B")  # the first and the second summary shown

SYSTEM_PROMPT = "You compare two summaries of the same text and say which one is better."
USER_PROMPT = """\
Which of the two summaries below is the better summary of the {name}? A better summary \
states the most important points of the {name} accurately and concisely, without \
unimportant or invented details.

{title}:
{document}

Summary A:
{first}

Summary B:
{second}

Answer with one letter, A or B, and nothing else."""


class JudgeError(PipelineError):
    """The endpoint kept failing or refused the request; answers received so far are cached."""


def parse_label(answer: str) -> str | None:
    """The label, "A" or "B", when the answer is exactly one label, allowing surrounding
    whitespace and one trailing period; otherwise None. Nothing is guessed from a longer answer: "A is
    better" and "a" are unparseable."""
    text = answer.strip()
    text = text.removesuffix(".")
    return text if text in LABELS else None


def model_shown_first(seed: int, item_id: str) -> bool:
    """Whether the model's summary is shown as A: a fair coin drawn from (seed, item id), so
    position bias cancels over items and a re-run asks the same questions (and hits the
    cache). The id is hashed with sha256, not hash(), which differs between processes."""
    id_hash = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")
    return bool(np.random.default_rng((seed, id_hash)).random() < 0.5)


def require_api_key() -> None:
    """Fail early, with one line, when ``judge=openai`` cannot authenticate."""
    if not os.environ.get("OPENAI_API_KEY", "").strip():
        raise ConfigError(
            "judge=openai needs OPENAI_API_KEY in the environment (it is read from there only, "
            "never from a config); set it, or use judge=offline"
        )


@dataclass
class OpenAIJudge:
    """An LLM judge behind an OpenAI-compatible endpoint (``OPENAI_BASE_URL``, default the
    OpenAI API), authenticated by ``OPENAI_API_KEY``. Every answer is cached in
    ``cache_dir``, one JSON file per request named by the sha256 of the request (model,
    messages, temperature, max_tokens): a re-run with everything cached makes no call and
    needs no key. The endpoint's address is not part of the name, so two endpoints that
    serve the same model name share answers."""

    cache_dir: Path
    model: str = "gpt-4"
    concurrency: int = 4  # requests in flight at once (threads)
    seed: int = 0  # decides the order the two summaries are shown in
    temperature: float = 0.0
    max_tokens: int = 4  # room for "A." and nothing more
    max_retries: int = 6  # per request, for 429, 5xx, lost connections and unreadable bodies
    backoff_s: float = 1.0  # the first retry waits about this long, doubling after each
    max_backoff_s: float = 60.0  # no wait is longer, even when the server asks for more
    timeout_s: float = 60.0  # per HTTP attempt
    document_name: str = "article"  # what the prompt calls the document ("post" on Reddit)
    echo: Callable[[str], None] = field(default=print, repr=False)
    name: str = field(default="openai", init=False)

    def __post_init__(self) -> None:
        self.cache_dir = Path(self.cache_dir)
        # Normalised: 0 and 0.0 would serialise differently and miss each other's cache.
        self.temperature, self.max_tokens = float(self.temperature), int(self.max_tokens)
        checks = {
            "model": isinstance(self.model, str) and bool(self.model.strip()),
            "concurrency": self.concurrency >= 1,
            "seed": self.seed >= 0,
            "temperature": 0 <= self.temperature <= 2,
            "max_tokens": self.max_tokens >= 1,
            "max_retries": self.max_retries >= 0,
            "backoff_s": self.backoff_s >= 0,
            "max_backoff_s": self.max_backoff_s >= 0,
            "timeout_s": self.timeout_s > 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"judge.{key}={getattr(self, key)!r} is out of range")

    def request(self, item: Comparison) -> tuple[dict[str, Any], bool]:
        """The chat-completions request for one item and whether the model's summary is A."""
        first_is_model = model_shown_first(self.seed, item.id)
        first, second = (item.model_summary, item.human_summary)[:: 1 if first_is_model else -1]
        user = USER_PROMPT.format(
            name=self.document_name,
            title=self.document_name.capitalize(),
            document=item.document.strip(),
            first=first.strip(),
            second=second.strip(),
        )
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
        request = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        return request, first_is_model

    def _cache_file(self, request: dict[str, Any]) -> Path:
        return self.cache_dir / f"{stable_hash(request)}.json"

    def _cached_answer(self, request: dict[str, Any]) -> str | None:
        path = self._cache_file(request)
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # absent, or not ours: asked again and overwritten
        # The stored request must be this one: guards against an edited or foreign file.
        ok = isinstance(entry, dict) and entry.get("request") == request
        return entry["answer"] if ok and isinstance(entry.get("answer"), str) else None

    def compare(self, items: Sequence[Comparison]) -> JudgeReport:
        asked = [self.request(item) for item in items]
        answers: dict[str, str] = {}  # request hash -> raw answer
        todo: dict[str, dict[str, Any]] = {}  # uncached requests, each once
        cached = 0
        for request, _ in asked:
            key = stable_hash(request)
            if key in answers or key in todo:
                continue
            answer = self._cached_answer(request)
            if answer is None:
                todo[key] = request
            else:
                answers[key] = answer
                cached += 1
        self.echo(
            f"judge openai: {len(items)} comparisons, {cached} cached, {len(todo)} calls to "
            f"{self.model} at concurrency {self.concurrency}"
        )
        retries = self._ask_all(todo, answers) if todo else 0
        verdicts = []
        for item, (request, first_is_model) in zip(items, asked, strict=True):
            answer = answers[stable_hash(request)]
            label = parse_label(answer)
            wins = None if label is None else (label == "A") == first_is_model
            verdicts.append(Verdict(item.id, wins, answer, first_is_model))
        report = JudgeReport(self.name, verdicts, calls=len(todo), cached=cached, retries=retries)
        self.echo(
            f"judge openai: {report.calls} calls ({report.retries} retries), {report.cached} "
            f"cached, {report.unparseable} unparseable; model wins {report.wins} of {report.n}"
        )
        return report

    def _ask_all(self, todo: dict[str, dict[str, Any]], answers: dict[str, str]) -> int:
        """Send the uncached requests, ``concurrency`` at a time; returns the retries. Each
        answer is cached as it arrives, so a run stopped by an error resumes where it was."""
        require_api_key()
        import openai
        from tqdm import tqdm

        # Base URL and key from the environment only; retries are ours (counted, with a
        # configurable back-off), so the client's own are off.
        client = openai.OpenAI(max_retries=0, timeout=self.timeout_s)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        retries = 0
        stop = threading.Event()  # set on the first failure: workers then stop retrying
        with (
            ThreadPoolExecutor(max_workers=self.concurrency) as pool,
            tqdm(total=len(todo), desc="judge openai", unit="call", disable=None) as bar,
        ):
            futures = {pool.submit(self._ask, client, r, stop): k for k, r in todo.items()}
            try:
                for future in as_completed(futures):
                    answer, tries = future.result()
                    answers[futures[future]] = answer
                    retries += tries
                    bar.update()
            except BaseException:
                # Requests not yet sent are dropped; those in flight finish (and are cached)
                # or give up at their next retry instead of sleeping on.
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return retries

    def _ask(self, client: Any, request: dict[str, Any], stop: threading.Event) -> tuple[str, int]:
        """(raw answer, retries) for one request, cached on disk before it returns."""
        import openai

        retries = 0
        while True:
            wait_s = None
            try:
                response = client.chat.completions.create(**request)
            except openai.APIStatusError as e:
                # 429 and 5xx pass; any other status (401, 400, 404) is the request's or the
                # credentials' fault and would fail the same way again. The server's message
                # is not repeated: it may quote the request or part of the key.
                if e.status_code != 429 and e.status_code < 500:
                    raise JudgeError(
                        f"judge openai: the endpoint answered HTTP {e.status_code} "
                        f"({type(e).__name__}) for model {self.model!r}"
                    ) from None
                why, wait_s = f"HTTP {e.status_code}", _retry_after(e.response)
            except openai.APIConnectionError as e:  # refused, reset or timed out
                why = type(e).__name__
            except json.JSONDecodeError:  # a 200 whose body is not JSON (a proxy's error page)
                why = "a response body that is not JSON"
            else:
                answer = _answer_text(response)
                # Stored with the request (never the key or the endpoint), so a later
                # run can check the file answers this very request.
                atomic_write_json(self._cache_file(request), {"request": request, "answer": answer})
                return answer, retries
            if retries >= self.max_retries or stop.is_set():
                raise JudgeError(
                    f"judge openai: gave up on a request after {retries} retries ({why}); "
                    "answers received so far are cached, run again to resume"
                )
            # Exponential back-off with jitter, so threads that hit a limit together do
            # not all come back together; a server's Retry-After is honoured up to the cap.
            delay = self.backoff_s * 2**retries * random.uniform(0.5, 1.0)
            stop.wait(min(max(delay, wait_s or 0.0), self.max_backoff_s))
            retries += 1


def _retry_after(response: Any) -> float | None:
    """Seconds a 429/503 response asks to wait (``Retry-After`` in seconds), if it says."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except (AttributeError, TypeError, ValueError):
        return None


def _answer_text(response: Any) -> str:
    """The first choice's text; "" when the response has none (no choices, a refusal), which
    parses as no label."""
    choices = getattr(response, "choices", None) or []
    content = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
    return content if isinstance(content, str) else ""
