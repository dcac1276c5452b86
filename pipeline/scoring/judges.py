"""Judges for the summarization task: is the model's summary better than the human-written
summary of the same article or post? The offline judge and the registry of judges.

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

from collections.abc import Callable, Sequence

from pipeline.infra.errors import ConfigError
from pipeline.scoring.rater import SummaryRater
from pipeline.scoring.verdicts import Comparison, JudgeReport, Verdict

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
