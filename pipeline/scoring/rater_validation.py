"""Validation of the stand-in summary rater (``rater.py``) against the human summaries it
never sees: overlap F1 with the human summary, candidates of varied quality per article,
and their agreement (``python -m pipeline.scoring.rater_validation`` prints it for the XSum stand-in).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.scoring.rater import SummaryRater, ngrams, rating_of, sentences, words


def overlap_f1(candidate: str, reference: str, n: int = 1) -> float:
    """ROUGE-n-like F1: clipped n-gram matches between candidate and reference (lower-cased
    words, no stemming, stop words kept). 0 when either side has no n-gram."""
    cand, ref = Counter(ngrams(words(candidate), n)), Counter(ngrams(words(reference), n))
    matches = sum((cand & ref).values())  # & keeps the smaller count of each: clipping
    if not matches:
        return 0.0
    precision, recall = matches / sum(cand.values()), matches / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def candidates(
    article: str, reference: str, other: str, rng: np.random.Generator
) -> dict[str, str]:
    """Summaries of varied quality for one article, by kind. ``other`` is the human summary
    of a different article (fluent, on-length, about the wrong story)."""
    first = (sentences(article) or [article])[0].split()
    ref, other_words, lead = reference.split(), other.split(), article.split()[:60]
    half = len(ref) // 2
    return {
        "human": reference,  # rated like any other candidate: the rater does not know it
        "human_truncated": " ".join(ref[: max(1, half)]),
        "human_then_other": " ".join(ref[:half] + other_words[len(other_words) // 2 :]),
        "human_shuffled": " ".join(rng.permutation(ref)),
        "first_sentence": " ".join(first),  # the extractive lead baseline
        "first_half_sentence": " ".join(first[: max(1, len(first) // 2)]),
        "first_sentence_shuffled": " ".join(rng.permutation(first)),
        "lead_random_words": " ".join(rng.choice(lead, size=min(15, len(lead)), replace=False)),
        "other_article": other,
        "looping": " ".join(lead[:4] * 6),  # a degenerate repeating sample
    }


@dataclass
class RaterValidation:
    """Agreement of the rater with overlap against the human summary."""

    n_articles: int
    n_candidates: int
    spearman_unigram: float  # over all candidates
    spearman_bigram: float
    spearman_within_article: float  # mean over articles of the unigram correlation
    pairwise_agreement: float  # share of same-article pairs ordered alike (overlap ties out)
    by_kind: dict[str, dict[str, float]]  # kind -> mean score, rating, unigram F1, bigram F1

    def lines(self) -> list[str]:
        out = [
            f"rater validation: {self.n_articles} articles, {self.n_candidates} candidates",
            f"  Spearman(score, unigram F1) = {self.spearman_unigram:.3f}",
            f"  Spearman(score, bigram F1)  = {self.spearman_bigram:.3f}",
            f"  within an article (mean)    = {self.spearman_within_article:.3f}",
            f"  pairwise order agreement    = {self.pairwise_agreement:.3f}",
            f"  {'kind':<24} {'score':>6} {'rating':>6} {'uni F1':>7} {'bi F1':>6}",
        ]
        for kind, m in self.by_kind.items():
            out.append(
                f"  {kind:<24} {m['score']:>6.3f} {m['rating']:>6.2f} "
                f"{m['unigram_f1']:>7.3f} {m['bigram_f1']:>6.3f}"
            )
        return out


def validate_rater(
    rater: SummaryRater, articles: Sequence[str], references: Sequence[str], seed: int = 0
) -> RaterValidation:
    """Rate :func:`candidates` for every article and compare with overlap F1 against the
    article's human summary (which the rater never sees)."""
    from scipy.stats import spearmanr

    if len(articles) != len(references) or len(articles) < 2:
        raise ValueError("validate_rater needs at least 2 articles, each with one reference")
    rng = np.random.default_rng(seed)
    n = len(articles)
    others = (np.arange(n) + rng.integers(1, n, size=n)) % n  # a random different article
    index, kinds, rows = [], [], []  # rows: (score, rating, unigram F1, bigram F1)
    for i, (article, reference) in enumerate(zip(articles, references, strict=True)):
        for kind, text in candidates(article, reference, references[others[i]], rng).items():
            fine = rater.score(article, text)
            rows.append(
                (
                    fine,
                    rating_of(fine),
                    overlap_f1(text, reference, 1),
                    overlap_f1(text, reference, 2),
                )
            )
            index.append(i)
            kinds.append(kind)
    table = np.array(rows)  # (n_candidates, 4)
    index, kinds = np.array(index), np.array(kinds)
    fine, uni = table[:, 0], table[:, 2]
    within, agree, total = [], 0, 0
    for i in range(n):
        s, u = fine[index == i], uni[index == i]
        if np.ptp(s) > 0 and np.ptp(u) > 0:
            within.append(spearmanr(s, u).statistic)
        a, b = np.triu_indices(len(s), k=1)
        differ = u[a] != u[b]
        agree += int(np.sum(np.sign(s[a] - s[b])[differ] == np.sign(u[a] - u[b])[differ]))
        total += int(differ.sum())
    names = ("score", "rating", "unigram_f1", "bigram_f1")
    by_kind = {
        k: dict(zip(names, table[kinds == k].mean(axis=0).tolist(), strict=True))
        for k in dict.fromkeys(kinds.tolist())
    }
    return RaterValidation(
        n_articles=n,
        n_candidates=len(rows),
        spearman_unigram=float(spearmanr(fine, uni).statistic),
        spearman_bigram=float(spearmanr(fine, table[:, 3]).statistic),
        spearman_within_article=float(np.mean(within)),
        pairwise_agreement=agree / total if total else float("nan"),
        by_kind=by_kind,
    )


def main() -> None:
    """Print the validation on the XSum stand-in: the 300 articles the rater was tuned on,
    and the 699 held out."""
    import time

    from pipeline import PROJECT_ROOT
    from pipeline.corpora.xsum import xsum_articles

    rows = xsum_articles(PROJECT_ROOT / ".cache" / "pipeline" / "downloads")
    documents = [r["document"] for r in rows]
    rater = SummaryRater(documents)
    for name, part in (("tuning (first 300)", rows[:300]), ("held out", rows[300:])):
        start = time.perf_counter()
        report = validate_rater(
            rater, [r["document"] for r in part], [r["reference"] for r in part]
        )
        took = time.perf_counter() - start
        print(f"== {name}: {took:.1f} s")
        print("\n".join(report.lines()))
    start = time.perf_counter()
    scored = [rater.score(d, r["reference"]) for d, r in zip(documents, rows, strict=True)]
    took = time.perf_counter() - start
    print(f"speed: {len(scored) / took:,.0f} summaries a second (articles already seen)")


if __name__ == "__main__":
    main()
