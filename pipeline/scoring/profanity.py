"""The toxicity stand-in's scorer: the scikit-learn p(offensive) model of
``alt-profanity-check==1.9.1``, extracted from its pinned wheel."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
from filelock import FileLock
from omegaconf import DictConfig

from pipeline.infra.errors import DataError
from pipeline.infra.wheels import PINS, wheel_member

PROFANITY_FILES = ("model.joblib", "vectorizer.joblib")


def prepare_profanity(out_dir: str | Path, download_dir: str | Path) -> Path:
    """Extract alt-profanity-check's model.joblib and vectorizer.joblib into ``out_dir``
    (once; later calls reuse them) and return ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir / ".prepare.lock")):
        for name in PROFANITY_FILES:
            target = out_dir / name
            if target.is_file():
                continue
            data = wheel_member(
                *PINS["alt-profanity-check"], f"profanity_check/data/{name}", download_dir
            )
            # Written whole then renamed: a killed run never leaves a truncated
            # pickle that a later run would take as prepared.
            tmp = out_dir / f".{name}.{uuid.uuid4().hex}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, target)
    return out_dir


class ProfanityScorer:
    """STAND-IN for the paper's toxicity classifier: p(offensive) from the TF-IDF +
    calibrated linear model that ``alt-profanity-check==1.9.1`` ships (read from its wheel,
    not installed). The scorer registry's ``profanity``: ``prepare`` extracts the model into
    the classifier stage's folder, the constructor loads it from there."""

    KEYS: tuple[str, ...] = ()  # no settings of its own enter the classifier's key

    @staticmethod
    def check(cfg: DictConfig) -> None:
        pass

    @staticmethod
    def prepare(scorer_cfg: DictConfig, train: list[dict], out: Path, download_dir: Path) -> None:
        prepare_profanity(out, download_dir)

    def __init__(
        self, scorer_cfg: DictConfig | None, folder: str | Path, device: str = "cpu"
    ) -> None:
        """``scorer_cfg`` and ``device`` as every registered scorer takes them (unused: the
        model has no settings and runs on the CPU)."""
        import joblib

        folder = Path(folder)
        missing = [n for n in PROFANITY_FILES if not (folder / n).is_file()]
        if missing:
            raise DataError(f"{folder} lacks {missing}; run prepare_profanity first")
        # joblib files are pickles: only load the ones extracted from the pinned wheel
        # (or a model the user trained), never a downloaded stranger's.
        self.model = joblib.load(folder / "model.joblib")
        self.vectorizer = joblib.load(folder / "vectorizer.joblib")
        classes = [int(c) for c in getattr(self.model, "classes_", [])]
        if classes != [0, 1]:
            # Column 1 of predict_proba is read as "offensive"; other classes break that.
            raise DataError(f"{folder}/model.joblib: expected classes [0, 1], got {classes}")

    def prob(self, texts: list[str]) -> np.ndarray:
        """p(offensive) per text, float64. The empty string gets a valid probability
        (the intercept alone); an empty list gives an empty array."""
        if not texts:
            return np.empty(0, dtype=np.float64)  # TfidfTransformer refuses 0 samples
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("ProfanityScorer.prob takes a list of strings")
        return self.model.predict_proba(self.vectorizer.transform(texts))[:, 1].astype(np.float64)
