"""Scorers behind one interface: texts -> the probability of one label, in [0, 1]
(p(positive) for sentiment, p(toxic) for toxicity: the task says which way is better).

Registry ``SCORERS``: ``scorer.name`` -> a class with ``KEYS`` (the settings it reads,
which alone enter the classifier stage's cache key), ``prepare`` (train or record it into
a folder, once) and a constructor from that folder. ``tfidf_logreg`` is the embedded
sentiment stand-in (trained here on labelled rows); ``hf_pipeline`` any transformers
text-classification model (the paper's classifiers); ``keyword`` a known-answer scorer
(a count of listed words) whose optimum is certain, so tests can check that training
moves the policy the right way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Protocol

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline.infra.checks import at_most, choice, get, hub_or_local, number
from pipeline.infra.errors import ConfigError, DataError, first_line
from pipeline.infra.hub import require_model
from pipeline.math.rewards import first_non_probability
from pipeline.scoring.profanity import ProfanityScorer


def checked_probabilities(p: np.ndarray, stage: str) -> np.ndarray:
    """A scorer's output, refused with the stage and row if any value is not a probability."""
    p = np.asarray(p, dtype=np.float64)
    row = first_non_probability(p)
    if row is not None:
        raise DataError(
            f"[{stage}] scorer returned {float(p.reshape(-1)[row])!r} for row {row}: not a probability"
        )
    return p


class Scorer(Protocol):
    KEYS: tuple[str, ...]

    def prob(self, texts: list[str]) -> np.ndarray: ...


# ---- embedded stand-in: TF-IDF (word 1-2 grams) + logistic regression -------------


class SklearnScorer:
    KEYS = ("max_ngram", "min_df", "C")

    @staticmethod
    def check(cfg: DictConfig) -> None:
        number(cfg, "scorer.max_ngram", integer=True)
        number(cfg, "scorer.min_df")
        number(cfg, "scorer.C")

    def __init__(self, scorer_cfg: DictConfig, path: Path, device: str) -> None:
        import joblib

        self.model = joblib.load(path / "classifier.joblib")

    @staticmethod
    def prepare(scorer_cfg: DictConfig, train: list[dict], out: Path, download_dir: Path) -> None:
        labelled = [r for r in train if r.get("label") is not None]
        fit_tfidf_logreg(
            [r["text"] for r in labelled], [r["label"] for r in labelled], scorer_cfg, out
        )

    def prob(self, texts: list[str]) -> np.ndarray:
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

    KEYS = ("keywords", "half")

    @staticmethod
    def check(cfg: DictConfig) -> None:
        words = get(cfg, "scorer.keywords")
        if (
            not isinstance(words, ListConfig)
            or not words
            or not all(isinstance(w, str) and w.strip() for w in words)
        ):
            raise ConfigError(f"scorer.keywords={words!r} must be a non-empty list of strings")
        number(cfg, "scorer.half")

    def __init__(self, scorer_cfg: DictConfig, path: Path, device: str) -> None:
        words = list(scorer_cfg.keywords)
        self.pattern = re.compile("|".join(re.escape(str(w)) for w in words), re.IGNORECASE)
        self.half = float(scorer_cfg.half)

    @staticmethod
    def prepare(scorer_cfg: DictConfig, train: list[dict], out: Path, download_dir: Path) -> None:
        spec = {"keywords": list(scorer_cfg.keywords), "half": scorer_cfg.half}
        (out / "scorer.json").write_text(json.dumps(spec))

    def prob(self, texts: list[str]) -> np.ndarray:
        counts = np.array([len(self.pattern.findall(t)) for t in texts], dtype=np.float64)
        return counts / (counts + self.half)


# ---- paper: a published classifier through a transformers pipeline ------------------


class HFPipelineScorer:
    KEYS = ("model", "label", "batch_size")

    @staticmethod
    def check(cfg: DictConfig) -> None:
        number(cfg, "scorer.batch_size", integer=True)
        if not isinstance(get(cfg, "scorer.label"), str):
            raise ConfigError(f"scorer.label={get(cfg, 'scorer.label')!r} must be a label name")
        hub_or_local(cfg, "scorer.model", require_model)

    @staticmethod
    def prepare(scorer_cfg: DictConfig, train: list[dict], out: Path, download_dir: Path) -> None:
        (out / "scorer.json").write_text(json.dumps({"model": scorer_cfg.model}))

    def __init__(self, scorer_cfg: DictConfig, path: Path, device: str) -> None:
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
        if scorer_cfg.label not in labels:
            raise ConfigError(
                f"scorer.label={scorer_cfg.label!r} is not one of the model's labels {sorted(labels)}"
            )
        self.label = scorer_cfg.label
        self.batch_size = scorer_cfg.batch_size

    def prob(self, texts: list[str]) -> np.ndarray:
        outputs = self.pipe(texts, batch_size=self.batch_size, truncation=True)
        return np.array(
            [next(o["score"] for o in out if o["label"] == self.label) for out in outputs]
        )


SCORERS: dict[str, type] = {
    "profanity": ProfanityScorer,
    "tfidf_logreg": SklearnScorer,
    "hf_pipeline": HFPipelineScorer,
    "keyword": KeywordScorer,
}


def params(scorer_cfg: DictConfig) -> dict:
    """The settings that make this scorer: its name, its own keys, and how many held-out
    rows measure it (not the accuracy bar it is checked against)."""
    keys = ("name", "max_eval_rows", *SCORERS[scorer_cfg.name].KEYS)
    values = {k: scorer_cfg[k] for k in keys}  # only these are read (the key's inputs)
    return {k: OmegaConf.to_container(v) if isinstance(v, ListConfig) else v
            for k, v in values.items()}  # fmt: skip


def check(cfg: DictConfig, optional: bool = False) -> None:
    """The scorer's settings, before any work (each scorer checks its own keys).
    ``optional``: the task brings or rates its own scores (custom, summarize), so it may
    name no scorer."""
    if get(cfg, "scorer.name") is None and optional:
        return
    choice(cfg, "scorer.name", SCORERS)
    number(cfg, "scorer.max_eval_rows", integer=True)
    number(cfg, "scorer.min_accuracy", strict=False)
    at_most(cfg, "scorer.min_accuracy", 1)
    SCORERS[cfg.scorer.name].check(cfg)


def prepare(scorer_cfg: DictConfig, train: list[dict], out: Path, download_dir: Path) -> None:
    """Train (or record) the scorer into ``out`` (a scorer in a wheel is kept in
    ``download_dir`` after its one download)."""
    SCORERS[scorer_cfg.name].prepare(scorer_cfg, train, out, Path(download_dir))


def load(scorer_cfg: DictConfig, path: Path, device: str = "cpu") -> Scorer:
    return SCORERS[scorer_cfg.name](scorer_cfg, Path(path), device)
