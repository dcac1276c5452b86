"""STAND-IN rater for the summarization task: a 1-7 rating of a candidate summary of an
article, computed from the article and the candidate alone.

The paper's preference data are people's 1-7 "overall" ratings of Reddit summaries; the
embedded stand-in has no people, so this rater plays their part. It never sees the
human-written summary, so that summary stays an independent yardstick: ``validate_rater``
(``rater_validation.py``) measures how well the rating tracks unigram/bigram overlap with it.

The fine score in [0, 1] multiplies five parts, each in [0, 1], on lower-cased words:

- ``relevance``: TF-IDF cosine between the candidate's and the article's content words (stop
  words out; IDF from the rater's corpus), so naming the article's rare key words (people,
  places) counts most, and words the article never uses (invented facts, another story)
  dilute it.
- ``fluency``: share of the candidate's word bigrams that occur in some corpus document
  other than this article: a cheap language model. Shuffled or random word strings fall.
- ``novelty``: 1 - 0.8 x the share of the candidate's word trigrams copied verbatim from the
  article. XSum's summaries are abstractive one-sentence restatements (the data set was
  built so the lead sentence is not in the article), and overlap with them punishes copying;
  a copied on-topic sentence still beats an off-topic one.
- ``length``: 1 for 8-35 words (one sentence), falling linearly outside.
- ``repetition``: (distinct word bigrams / all bigrams) squared; a looping sample scores low.

score = length x repetition x fluency**2 x relevance x novelty. fluency is squared because a
word salad can still name every key word. An empty candidate scores 0. The 1-7 rating is
1 + the number of fixed :data:`THRESHOLDS` the score reaches.

Measured (``python -m pipeline.scoring.rater_validation``; 10 candidates of varied quality per article, whole
articles, the 999 XSum stand-in articles; the form of the score, its constants and the
thresholds were chosen on the first 300 articles, the other 699 are held out; only an
earlier, lead-only design was ever scored on all 999). Held out:
Spearman correlation of the score with the candidate's overlap F1 against the human summary
0.48 unigram and 0.50 bigram over 6,990 candidates, 0.51 within an article (mean over
articles); two candidates of the same article are ordered as by unigram overlap in 71% of
pairs. Mean rating: human summary 5.0, its first half 4.1, an extractive first sentence 3.0,
the human summary shuffled 2.4 (unigram overlap calls it perfect, bigram overlap does not),
another article's summary 1.2, a looping sample 1.0. About 13,000 summaries a second on one
core once their article has been seen. See ``rater_validation.candidates`` for the candidates.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

RATER_VERSION = 1  # bump when the score changes: ratings cached under the old one are stale

# A word is a run of letters or digits, with an optional 's / 't style suffix.
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# A sentence ends at . ! or ? followed by space and a capital, digit or opening quote.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'\u2018\u201c(]?[A-Z0-9])")

# Common English function words: they say nothing about content, so relevance ignores
# them (a short fixed list, so the rater depends on nothing else).
_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves said says say mr mrs ms"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

LENGTH_RANGE = (8, 35)  # words; XSum's human summaries average 21, TL;DRs are similar
COPY_PENALTY = 0.8
# Score thresholds for ratings 2..7, fixed once from the spread of scores of the first 300
# articles' validation candidates (not from their overlap with the human summary).
THRESHOLDS = (0.005, 0.015, 0.03, 0.05, 0.08, 0.12)


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower())


def sentences(text: str) -> list[str]:
    """Sentences of ``text`` (lines first: news text puts one paragraph per line)."""
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(tokens[i:] for i in range(n)), strict=False))


def length_factor(n_words: int) -> float:
    low, high = LENGTH_RANGE
    if n_words < low:
        return n_words / low
    if n_words > high:
        return max(0.0, 1.0 - (n_words - high) / high)  # 0 at twice the upper length
    return 1.0


def rating_of(fine: float) -> int:
    """The 1-7 rating of a fine score."""
    return 1 + sum(fine >= t for t in THRESHOLDS)


def relative_ratings(scores: np.ndarray) -> np.ndarray:
    """1-7 ratings of a pool of fine scores, relative to the pool (``task.rating_scale=
    relative``): 1 where the score is 0 (no key word of the article, or empty), else 2-7 by
    the score's sextile among the pool's positive scores (2: the lowest sixth). Equal
    scores get equal ratings; NaN stays NaN.

    Why: a small model's samples sit at the bottom of the absolute scale (the 0.33M stand-in:
    3,144 of 3,200 rated 1, leaving 163 pairs), where the fixed thresholds cannot tell them
    apart. The order of the scores, which the validation measures, is kept; only the
    binning follows the pool."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(scores.shape, np.nan)
    finite = np.isfinite(scores)
    out[finite & (scores <= 0)] = 1.0
    positive = scores[finite & (scores > 0)]
    if positive.size:
        edges = np.quantile(positive, [k / 6 for k in range(1, 6)])
        where = finite & (scores > 0)
        out[where] = 2.0 + np.searchsorted(edges, scores[where], side="right")
    return out


@dataclass(frozen=True)
class _Article:
    """What the rater needs from one article, computed once per article text."""

    vector: dict[str, float]  # content word -> TF-IDF weight
    norm: float
    bigrams: frozenset[tuple[str, ...]]
    trigrams: frozenset[tuple[str, ...]]
    in_corpus: bool  # its own bigrams are then left out of the fluency check


class SummaryRater:
    """Rates summaries of articles 1-7. ``corpus``: the documents that give IDF weights and
    the bigrams fluency looks for (the stand-in uses the 999 XSum articles; never the human
    summaries, or the rater would see the references). Fluency needs hundreds of documents:
    with a handful, a sentence lifted from another document out-scores a good summary."""

    def __init__(self, corpus: Iterable[str]) -> None:
        self.bigram_docs: Counter[tuple[str, ...]] = Counter()  # bigram -> documents with it
        word_docs: Counter[str] = Counter()
        self._corpus_ids: set[str] = set()
        digest = hashlib.sha256()
        for doc in corpus:
            tokens = words(doc)
            self.bigram_docs.update(set(ngrams(tokens, 2)))
            word_docs.update({t for t in tokens if t not in STOP_WORDS})
            self._corpus_ids.add(self._id(tokens))
            digest.update(self._id(tokens).encode())
        n = len(self._corpus_ids)
        if n == 0:
            raise ValueError("SummaryRater needs a corpus of at least one document")
        # Smoothed IDF (as scikit-learn's); a word the corpus lacks gets the highest weight.
        self.idf = {w: math.log((n + 1) / (c + 1)) + 1 for w, c in word_docs.items()}
        self.unseen_idf = math.log(n + 1) + 1
        self.identity = {"version": RATER_VERSION, "corpus_sha256": digest.hexdigest()}
        self._articles: dict[str, _Article] = {}

    @staticmethod
    def _id(tokens: list[str]) -> str:
        return hashlib.sha256(" ".join(tokens).encode()).hexdigest()

    def _weights(self, tokens: Iterable[str]) -> dict[str, float]:
        counts = Counter(t for t in tokens if t not in STOP_WORDS)
        return {t: c * self.idf.get(t, self.unseen_idf) for t, c in counts.items()}

    def _article(self, text: str) -> _Article:
        art = self._articles.get(text)
        if art is None:
            if len(self._articles) >= 20_000:
                self._articles.clear()  # bounded memory over long sampling runs
            tokens = words(text)
            vector = self._weights(tokens)
            art = _Article(
                vector=vector,
                norm=math.sqrt(sum(v * v for v in vector.values())),
                bigrams=frozenset(ngrams(tokens, 2)),
                trigrams=frozenset(ngrams(tokens, 3)),
                in_corpus=self._id(tokens) in self._corpus_ids,
            )
            self._articles[text] = art
        return art

    def components(self, article: str, summary: str) -> dict[str, float]:
        """The score's parts for one candidate (see the module docstring)."""
        art = self._article(article)
        tokens = words(summary)
        vector = self._weights(tokens)
        norm = math.sqrt(sum(v * v for v in vector.values()))
        dot = sum(v * art.vector.get(t, 0.0) for t, v in vector.items())
        pairs, triples = ngrams(tokens, 2), ngrams(tokens, 3)
        # Seen elsewhere: in some corpus document, not counting this article itself.
        elsewhere = [self.bigram_docs[p] - (art.in_corpus and p in art.bigrams) > 0 for p in pairs]
        copied = sum(t in art.trigrams for t in triples) / len(triples) if triples else 0.0
        return {
            "relevance": dot / (norm * art.norm) if norm and art.norm else 0.0,
            "fluency": sum(elsewhere) / len(pairs) if pairs else 0.0,
            "novelty": 1.0 - COPY_PENALTY * copied,
            "length": length_factor(len(tokens)),
            "repetition": (len(set(pairs)) / len(pairs)) ** 2 if pairs else 1.0,
        }

    def score(self, article: str, summary: str) -> float:
        """The fine score in [0, 1]; 0 for a candidate without a word."""
        c = self.components(article, summary)
        return c["length"] * c["repetition"] * c["fluency"] ** 2 * c["relevance"] * c["novelty"]

    def rate(self, article: str, summary: str) -> int:
        """The 1-7 rating of ``summary`` as a summary of ``article``."""
        return rating_of(self.score(article, summary))

    def rate_many(self, articles: Sequence[str], summaries: Sequence[str]) -> np.ndarray:
        """int64 ratings, one per (article, summary) pair."""
        if len(articles) != len(summaries):
            raise ValueError(f"{len(articles)} articles but {len(summaries)} summaries")
        pairs = zip(articles, summaries, strict=True)
        return np.array([self.rate(a, s) for a, s in pairs], dtype=np.int64)
