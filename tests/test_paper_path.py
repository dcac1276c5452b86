"""The paper-scale code paths (hub data set, pretrained causal LM, transformers
classifier pipeline) exercised on small local fixtures instead of the hub."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from pipeline.modeling import models
from pipeline.scoring.scorers import HFPipelineScorer
from pipeline.tasks.sentiment import TASK as SENTIMENT
from tests.conftest import ROOT, run_in_process


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
    done = run_in_process([f"scale.model.pretrained={lm}", "loss=dpo"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert sorted(table["loss"]) == ["dpo", "sft"]


def _tiny_classifier(tmp: Path, labels: tuple[str, str]) -> Path:
    """A randomly initialised DistilBERT text classifier saved like a hub model."""
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
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tok.pad_token_id,
    )
    path = tmp / f"tiny-clf-{labels[1]}"
    DistilBertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_transformers_classifier_pipeline_scores_probabilities(tmp_path: Path) -> None:
    path = _tiny_classifier(tmp_path, ("NEGATIVE", "POSITIVE"))
    scorer = HFPipelineScorer(
        OmegaConf.create({"model": str(path), "label": "POSITIVE", "batch_size": 8}),
        path,
        device="cpu",
    )
    p = scorer.prob([r["text"] for r in _fixture_rows()][:10])
    assert p.shape == (10,) and np.all((p >= 0) & (p <= 1))


def test_toxicity_paper_paths_on_local_fixtures(tmp_path: Path) -> None:
    """The paper scale's toxicity paths without the hub: a pretrained causal LM from a
    folder, a transformers classifier with the paper's labels (nothate / hate) and a file
    in the RealToxicityPrompts layout (prompt.text, prompt.toxicity, continuation)."""
    lm = _tiny_pretrained_lm(tmp_path)
    clf = _tiny_classifier(tmp_path, ("nothate", "hate"))
    rtp = ROOT / "tests" / "fixtures" / "rtp_layout.jsonl"
    done = run_in_process(
        ["task=toxicity", "loss=dpo", f"scale.model.pretrained={lm}", "data.source=local",
         f"data.path={rtp}", "data.heldout_fraction=0.3", "scorer.name=hf_pipeline",
         f"scorer.model={clf}", "scorer.label=hate", "scale.sample.n_prompts=5",
         "scale.eval.n_prompts=2", "n_pairs=10"],
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert sorted(table["loss"]) == ["dpo", "sft"]
    assert table["toxicity"].between(0, 1).all() and table["toxic_share"].between(0, 1).all()
