"""The paper-scale code paths (hub data set, pretrained causal LM, transformers
classifier pipeline) exercised on small local fixtures instead of the hub."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from pipeline import models
from pipeline.scorers import HFPipelineScorer
from pipeline.tasks.sentiment import TASK as SENTIMENT
from tests.conftest import ROOT, run_cli


def _fixture_rows() -> list[dict]:
    with open(ROOT / "tests" / "fixtures" / "sentiment_reviews.csv") as f:
        return list(csv.DictReader(f))


def _imdb_like_folder(tmp: Path) -> Path:
    """A local folder laid out like the hub's IMDB: train and test splits, text and label."""
    folder = tmp / "imdb"
    folder.mkdir()
    rows = _fixture_rows()
    for split, part in (("train", rows[:200]), ("test", rows[200:])):
        pd.DataFrame(
            {"text": [r["text"] for r in part], "label": [int(r["label"]) for r in part]}
        ).to_csv(folder / f"{split}.csv", index=False)
    return folder


def test_hub_loader_reads_an_imdb_layout(tmp_path: Path) -> None:
    folder = _imdb_like_folder(tmp_path)
    data = {
        "source": "hub",
        "name": str(folder),
        "train_split": "train",
        "test_split": "test",
        "text_field": "text",
        "label_field": "label",
    }
    train, test = SENTIMENT.load_splits(OmegaConf.create({"data": data}))
    assert len(train) == 200 and len(test) == 100
    assert {r["label"] for r in train} == {0, 1} and all(r["text"] for r in test)


def _tiny_pretrained_lm(tmp: Path) -> Path:
    texts = [r["text"] for r in _fixture_rows()]
    tok = models.train_bpe_tokenizer(texts, 300)
    model = models.small_gpt2(len(tok), n_layer=1, n_embd=32, n_head=2, n_positions=32)
    path = tmp / "tiny-lm"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_pipeline_fine_tunes_a_pretrained_model_from_a_local_path(tmp_path: Path) -> None:
    lm = _tiny_pretrained_lm(tmp_path)
    run_cli([f"scale.model.pretrained={lm}", "loss=dpo"], tmp_path)
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert sorted(table["loss"]) == ["dpo", "sft"]


def test_transformers_classifier_pipeline_scores_probabilities(tmp_path: Path) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    texts = [r["text"] for r in _fixture_rows()]
    tok = models.train_bpe_tokenizer(texts, 300)
    config = DistilBertConfig(
        vocab_size=len(tok),
        dim=32,
        hidden_dim=64,
        n_layers=1,
        n_heads=2,
        max_position_embeddings=64,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
        pad_token_id=tok.pad_token_id,
    )
    path = tmp_path / "tiny-clf"
    DistilBertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    scorer = HFPipelineScorer(
        OmegaConf.create({"model": str(path), "label": "POSITIVE", "batch_size": 8}),
        path,
        device="cpu",
    )
    p = scorer.prob(texts[:10])
    assert p.shape == (10,) and np.all((p >= 0) & (p <= 1))
