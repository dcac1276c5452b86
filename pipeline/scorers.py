"""Reward classifiers behind one interface: texts -> p(good label) in [0, 1].

Registry SCORERS: name -> (train_or_prepare, load). ``tfidf_logreg`` is the
embedded stand-in (trained here on the labelled stand-in reviews);
``hf_pipeline`` is the paper's published classifier through ``transformers``;
``keyword`` is a known-answer scorer (a count of listed words) whose optimum is
certain, so tests can check that training moves the policy the right way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from omegaconf import DictConfig

from pipeline.errors import ConfigError, first_line
from pipeline.hub import require_model


class Scorer(Protocol):
    def p_positive(self, texts: list[str]) -> np.ndarray: ...


# ---- embedded stand-in: TF-IDF (word 1-2 grams) + logistic regression -------------


class SklearnScorer:
    def __init__(self, path: Path) -> None:
        import joblib

        self.model = joblib.load(path)

    def p_positive(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_proba(texts)[:, 1]


def fit_tfidf_logreg(
    texts: list[str], labels: list[int], scorer_cfg: DictConfig, out: Path
) -> None:
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(
            ngram_range=(1, scorer_cfg.max_ngram), min_df=scorer_cfg.min_df, sublinear_tf=True
        ),
        LogisticRegression(C=scorer_cfg.C, max_iter=2000),
    )
    model.fit(texts, labels)
    joblib.dump(model, out / "classifier.joblib")


# ---- known answer: p = k / (k + half), k = occurrences of the listed strings ---------


class KeywordScorer:
    """Deterministic and learnable: k counts the listed strings in a text (any case,
    inside words too) and p = k / (k + half), so p = 0.5 at ``half`` occurrences and
    more is always better. Its optimum is certain, unlike a classifier's."""

    def __init__(self, keywords: list[str], half: float) -> None:
        self.pattern = re.compile("|".join(re.escape(str(w)) for w in keywords), re.IGNORECASE)
        self.half = float(half)

    def p_positive(self, texts: list[str]) -> np.ndarray:
        counts = np.array([len(self.pattern.findall(t)) for t in texts], dtype=np.float64)
        return counts / (counts + self.half)


# ---- paper: a published classifier through a transformers pipeline ------------------


class HFPipelineScorer:
    def __init__(self, scorer_cfg: DictConfig, device: str) -> None:
        from transformers import pipeline

        require_model(scorer_cfg.model, "scorer.model")
        try:
            self.pipe = pipeline(
                "text-classification", model=scorer_cfg.model, top_k=None, device=device
            )
        except OSError as e:
            raise ConfigError(
                f"scorer.model={scorer_cfg.model!r} could not be loaded: {first_line(e)}"
            ) from None
        labels = set(self.pipe.model.config.id2label.values())
        if scorer_cfg.positive_label not in labels:
            raise ConfigError(
                f"scorer.positive_label={scorer_cfg.positive_label!r} is not one of the model's labels {sorted(labels)}"
            )
        self.positive = scorer_cfg.positive_label
        self.batch_size = scorer_cfg.batch_size

    def p_positive(self, texts: list[str]) -> np.ndarray:
        outputs = self.pipe(texts, batch_size=self.batch_size, truncation=True)
        return np.array(
            [next(o["score"] for o in out if o["label"] == self.positive) for out in outputs]
        )


def prepare(scorer_cfg: DictConfig, train: list[dict], out: Path) -> None:
    """Train (or record) the scorer into ``out``."""
    if scorer_cfg.name == "tfidf_logreg":
        labelled = [r for r in train if r["label"] is not None]
        fit_tfidf_logreg(
            [r["text"] for r in labelled], [r["label"] for r in labelled], scorer_cfg, out
        )
    elif scorer_cfg.name == "hf_pipeline":
        (out / "scorer.json").write_text(json.dumps({"model": scorer_cfg.model}))
    elif scorer_cfg.name == "keyword":
        spec = {"keywords": list(scorer_cfg.keywords), "half": scorer_cfg.half}
        (out / "scorer.json").write_text(json.dumps(spec))
    else:
        raise ValueError(f"unknown scorer {scorer_cfg.name!r}")


def load(scorer_cfg: DictConfig, path: Path, device: str = "cpu") -> Scorer:
    loaders: dict[str, Callable[[], Scorer]] = {
        "tfidf_logreg": lambda: SklearnScorer(path / "classifier.joblib"),
        "hf_pipeline": lambda: HFPipelineScorer(scorer_cfg, device),
        "keyword": lambda: KeywordScorer(list(scorer_cfg.keywords), scorer_cfg.half),
    }
    return loaders[scorer_cfg.name]()


SCORERS = ("tfidf_logreg", "hf_pipeline", "keyword")
