"""Judges for the summarization task: is the model's summary better than the human-written
summary of the same article or post? Plus the win rate's Wilson interval.

Two judges, in the registry :data:`JUDGES` (``get(name)`` builds the config group ``judge``):

- ``offline`` (the embedded default): the stand-in rater of :mod:`pipeline.scoring.rater` scores both
  summaries against the whole article and the model wins when its fine score is strictly
  higher. It measures how well a summary names the article's key words in fluent, non-copied,
  non-repeating text of one sentence's length; it is the same signal the stand-in's preference
  pairs were built from (binned to 1-7 there), so a rising win rate says the policy learned
  the rater, whose agreement with overlap against human summaries is measured in
  :mod:`pipeline.scoring.rater`. A tie (equal scores: identical or equally empty summaries) is a
  loss, the forced choice an LLM judge makes too, and is counted in ``ties``.
- ``openai``: an LLM (GPT-4 by default) through any OpenAI-compatible chat-completions
  endpoint (:mod:`pipeline.scoring.llm_judge`).

A win rate is wins / n over the comparisons whose answer could be parsed; unparseable
answers are left out of n and reported, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.infra.errors import ConfigError
from pipeline.scoring.rater import SummaryRater

Z95 = 1.959964  # the standard normal quantile for a two-sided 95% interval


def wilson(wins: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion wins / n; (nan, nan) when n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n
    wins, which a judge's win rate near 0 or 1 on 100 prompts needs."""
    if n < 0 or not 0 <= wins <= n:
        raise ValueError(f"wilson needs 0 <= wins <= n, got wins={wins}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    p = wins / n
    z2 = z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamped: at 0 or n wins the bound is exactly 0 or 1, rounding can land a hair outside.
    return (max(0.0, center - half), min(1.0, center + half))


@dataclass(frozen=True)
class Comparison:
    """One item to judge: the model's and the human's summary of the same document."""

    id: str  # with the seed, decides the order the two summaries are shown in
    document: str  # what both summarize (the stand-in gives its whole article)
    model_summary: str
    human_summary: str


@dataclass(frozen=True)
class Verdict:
    id: str
    model_wins: bool | None  # None: the judge's answer could not be parsed
    answer: str  # the LLM's raw answer, or the offline judge's two scores
    model_first: bool | None = None  # the model's summary shown as A (LLM judge only)


@dataclass
class JudgeReport:
    """Verdicts in the order of the items, and what it took to get them."""

    judge: str
    verdicts: list[Verdict]
    calls: int = 0  # requests answered by the endpoint in this run (each once, retries apart)
    cached: int = 0  # requests answered from the on-disk cache (a repeated one counts once)
    retries: int = 0  # extra attempts after a rate limit, server error or lost connection
    ties: int = 0  # offline judge: equal scores (counted as losses)

    @property
    def unparseable(self) -> int:
        return sum(v.model_wins is None for v in self.verdicts)

    @property
    def wins(self) -> int:
        return sum(v.model_wins is True for v in self.verdicts)

    @property
    def n(self) -> int:
        """Comparisons with a parsed answer: the win rate's denominator."""
        return len(self.verdicts) - self.unparseable

    def counts(self) -> dict[str, Any]:
        """One flat row: wins, n, win_rate, its Wilson 95% interval and the judge's counts."""
        low, high = wilson(self.wins, self.n)
        return {
            "judge": self.judge,
            "wins": self.wins,
            "n": self.n,
            "win_rate": self.wins / self.n if self.n else math.nan,
            "ci_low": low,
            "ci_high": high,
            "unparseable": self.unparseable,
            "ties": self.ties,
            "calls": self.calls,
            "cached": self.cached,
            "retries": self.retries,
        }


class Judge(Protocol):
    name: str

    def compare(self, items: Sequence[Comparison]) -> JudgeReport: ...


# ---- offline --------------------------------------------------------------------------------


class OfflineJudge:
    """The model wins when the stand-in rater scores its summary strictly higher than the
    human's (see the module docstring); no network, deterministic."""

    name = "offline"

    def __init__(self, rater: SummaryRater) -> None:
        self.rater = rater

    def compare(self, items: Sequence[Comparison]) -> JudgeReport:
        verdicts, ties = [], 0
        for item in items:
            model = self.rater.score(item.document, item.model_summary)
            human = self.rater.score(item.document, item.human_summary)
            ties += model == human
            verdicts.append(Verdict(item.id, model > human, f"{model:.6f} vs {human:.6f}"))
        return JudgeReport(self.name, verdicts, ties=ties)


def _openai() -> type:
    from pipeline.scoring.llm_judge import (
        OpenAIJudge,  # its own module: the HTTP client and its cache
    )

    return OpenAIJudge


# name -> a function that returns the judge's class
JUDGES: dict[str, Callable[[], type]] = {"offline": lambda: OfflineJudge, "openai": _openai}


def get(name: str) -> type:
    """The judge class registered as ``name``."""
    try:
        return JUDGES[name]()
    except KeyError:
        raise ConfigError(f"judge={name!r} is not a judge (known: {sorted(JUDGES)})") from None
