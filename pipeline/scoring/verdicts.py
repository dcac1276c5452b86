"""What a judge is given and what it answers: the value types every judge shares
(the offline judge in :mod:`pipeline.scoring.judges`, the LLM judge in
:mod:`pipeline.scoring.llm_judge`), apart from both so neither imports the other."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.math.stats import wilson


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
