"""How the stages' outputs are read back: the one module every stage may import, so that
no stage reaches into another's code to read its artifact. Each reader names the file its
stage writes (``<cache_dir>/<stage>/<key>/...``)."""

from __future__ import annotations

import json

import numpy as np

from pipeline.infra.cache import Artifact
from pipeline.infra.io import load_arrays


def samples(artifact: Artifact) -> dict:
    """The sample stage's ``samples.json``: ``prompts`` (token ids per prompt),
    ``responses`` (token ids per sample, per prompt) and ``texts`` (what the scorer reads)."""
    return json.loads((artifact / "samples.json").read_text())


def scores(artifact: Artifact) -> dict[str, np.ndarray]:
    """The score stage's ``scores.npz``: ``score`` (n_prompts, n_samples) and, for a
    scorer, ``p_positive``."""
    return load_arrays(artifact / "scores.npz")


def pairs(artifact: Artifact) -> dict:
    """The pairs stage's ``pairs.npz``."""
    return load_arrays(artifact / "pairs.npz")


def reference_logps(artifact: Artifact) -> np.ndarray:
    """The reference stage's log pi_SFT(response | prompt), one per response, flattened."""
    return load_arrays(artifact / "reference_logps.npz")["logps"]


def heldout(artifact: Artifact | None) -> dict[str, np.ndarray] | None:
    """The heldout stage's ``heldout.npz``: the SFT model's values on the held-out set,
    as its task named them (None: the task has none)."""
    return None if artifact is None else load_arrays(artifact / "heldout.npz")
