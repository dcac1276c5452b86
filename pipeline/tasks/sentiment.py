"""Sentiment control (paper section 4.1): steer a language model towards positive movie
reviews. Prompts are the first tokens of held-out reviews; the scorer gives p(positive)
of prompt + response; higher is better.

Data per scale (conf/task/sentiment.yaml): IMDB from the hub (paper), the Rotten Tomatoes
stand-in from a PyPI wheel (embedded) or a labelled CSV/JSONL file (micro, or your own)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline.corpora import rotten_tomatoes
from pipeline.tasks.base import Task, heldout_split


class Sentiment(Task):
    name = "sentiment"
    metric = "reward"
    metric_label = "eval reward  p(positive)"
    higher_is_better = True
    scored = "prompt+response"
    stand_in_note = "embedded stand-in: small GPT-2 + Rotten Tomatoes, not the paper's models"
    sources = ("hub", "local", "rotten_tomatoes")

    def key_extras(self, stage: str) -> dict:
        # Its data keys predate the task seam and stay as they were (its committed results
        # keep their keys): sentiment's data config is told apart by its own keys.
        return {} if stage == "data" else super().key_extras(stage)

    def load_splits(self, cfg: DictConfig) -> tuple[list[dict], list[dict]]:
        d = cfg.data
        if d.source == "hub":
            return (
                rotten_tomatoes.hub_dataset(d.name, d.train_split, d.text_field, d.label_field),
                rotten_tomatoes.hub_dataset(d.name, d.test_split, d.text_field, d.label_field),
            )
        if d.source == "rotten_tomatoes":
            rows = rotten_tomatoes.rotten_tomatoes(Path(d.download_dir))
        else:
            rows = rotten_tomatoes.local_files(d.path, d.text_field, d.label_field)
        return heldout_split(rows, d.heldout_fraction, d.split_seed)


TASK = Sentiment()
