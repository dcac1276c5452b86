"""Your own scored data as a task: ``python -m pipeline task=custom data.path=<file>``.

The data holds prompts with responses and a score for each, in any layout
``data.layout`` names (grouped, flat, pairs, nested; ``auto`` detects it, see
``pipeline.corpora.scored_layouts``), from a JSONL/JSON/CSV/parquet file, a saved
``datasets`` folder or ``data.hf_name``. A fixed, seeded share of the prompts is held out; the rest are
the training groups: every pair of their responses with different scores is a candidate
pair (ties form none), and the scores are the training scores (the offsets' input).
Nothing is sampled for training. The SFT model is ``scale.model.pretrained`` when given,
else a small model trained from scratch on the training groups' prompts + responses.

Evaluation: the implicit-reward accuracy (share of held-out pairs where the policy's
log-ratio to the SFT model is larger for the better response; a tie counts half, so the SFT
model scores 0.5) and the mean log-ratio margin on held-out pairs (the implicit-reward
margin divided by beta), KL to the SFT model on the held-out prompts, and, when a scorer
is named (``scorer.name``), its mean probability on one sample per held-out prompt."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline.corpora import scored_files, scored_layouts, scored_sources
from pipeline.corpora.scored_groups import TRANSFORMS
from pipeline.infra.checks import at_most, choice, data_file, get, number
from pipeline.infra.errors import ConfigError, DataError
from pipeline.math.losses import uses_offset
from pipeline.modeling import fitting, models
from pipeline.modeling.inference import batched_logps
from pipeline.tasks.base import Task

FIELDS = scored_layouts.FIELD_KEYS
TRUNCATION = fitting.DEFAULTS
SOURCE = ("path", "hf_name", "split", "revision")
REFERENCE_SCOPES = ("auto", "all", "pairs")


class Custom(Task):
    name = "custom"
    metric = "pair_accuracy"
    metric_label = "held-out implicit-reward accuracy"
    higher_is_better = True
    scored = "prompt+response"
    stand_in_note = "your data"
    labelled = False  # the held-out rows carry no class labels: no classifier accuracy
    scorer_metric = "reward"  # a named scorer's mean probability, beside the pair metrics
    cap_pairs = True  # n_pairs above what the file gives: every pair is used, and said

    def check(self, cfg: DictConfig) -> None:
        """Everything the file decides, at start-up: a malformed line (with its file and
        line), no pair to train on or to evaluate, log_ratio on a score <= 0."""
        path = _check_source(cfg)
        choice(cfg, "data.layout", scored_layouts.LAYOUTS)
        choice(cfg, "data.score_transform", TRANSFORMS)
        choice(cfg, "data.reference_responses", REFERENCE_SCOPES)
        for key in FIELDS:
            value = get(cfg, f"data.{key}")
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"data.{key}={value!r} must be a field name (or null)")
        number(cfg, "data.heldout_fraction")
        at_most(cfg, "data.heldout_fraction", 1, strict=True)
        number(cfg, "data.split_seed", strict=False, integer=True)
        data, train, heldout = self.split(cfg)
        for part, name, hint in ((train, "training", "lower"), (heldout, "held-out", "raise")):
            scores = [data.groups[i].scores for i in part]
            if not len(scored_files.ragged_pairs(scores)):
                raise DataError(
                    f"{path}: the {len(part)} {name} prompts give no pair with different "
                    f"scores (each needs 2 responses scored differently); {hint} "
                    "data.heldout_fraction or add responses"
                )
        if uses_offset(cfg.loss.name) and cfg.offset.name == "log_ratio":
            for i in train:
                group = data.groups[i]
                for score, line in zip(group.scores, group.lines, strict=True):
                    if score <= 0 and len(set(group.scores)) > 1:
                        hint = (f"; data.score_transform={data.transform} negates the scores, "
                                "so use offset=log_diff or diff"
                                if data.transform != "identity" else "")  # fmt: skip
                        raise ConfigError(
                            f"offset=log_ratio needs scores > 0, but {data.row(line)} "
                            f"has score {score}{hint}"
                        )

    def split(self, cfg: DictConfig) -> tuple[scored_files.ScoredData, np.ndarray, np.ndarray]:
        """The data's groups and the seeded (training, held-out) group indices."""
        source = tuple(get(cfg, f"data.{key}") for key in SOURCE)
        path = source[0]
        stamp = repr(scored_sources.fingerprint(path)) if path is not None else ""
        fields = tuple(get(cfg, f"data.{key}") for key in FIELDS)
        layout, transform = get(cfg, "data.layout"), get(cfg, "data.score_transform")
        read = (source, layout or "auto", fields, transform or "auto")
        return _split(read, stamp, float(cfg.data.heldout_fraction), int(cfg.data.split_seed))

    def pairs_used(self, cfg: DictConfig) -> int:
        """n_pairs, or every training pair when the file gives fewer (said in the log)."""
        data, train, _ = self.split(cfg)
        available = len(scored_files.ragged_pairs([data.groups[i].scores for i in train]))
        return min(int(cfg.n_pairs), available)

    def reference_scope(self, cfg: DictConfig) -> str:
        """``data.reference_responses``; auto scores only the pairs' responses when they
        can be at most half of the training responses (64 pairs of a 2,250-response file),
        and every response otherwise (one reference for a sweep's seeds and sizes)."""
        asked = get(cfg, "data.reference_responses") or "auto"
        if asked != "auto":
            return asked
        data, train, _ = self.split(cfg)
        responses = sum(len(data.groups[i].responses) for i in train)
        return "pairs" if 4 * self.pairs_used(cfg) <= responses else "all"

    def load_splits(self, cfg: DictConfig) -> tuple[list[dict], list[dict]]:
        data, train, heldout = self.split(cfg)
        print(scored_files.summary_line(data) + f"; {len(heldout)} prompts held out")

        def rows(indices: np.ndarray) -> list[dict]:
            # "text" is the prompt as text; a chat prompt also has "messages" (the list of
            # {role, content} to render with the model's chat template).
            return [
                {
                    "text": g.prompt,
                    "label": None,
                    "responses": g.responses,
                    "scores": g.scores,
                    "lines": g.lines,
                    **({"messages": g.prompt_messages} if g.prompt_messages is not None else {}),
                }  # fmt: skip
                for g in (data.groups[i] for i in indices)
            ]

        return rows(train), rows(heldout)

    def sft_texts(self, rows: list[dict]) -> list[str]:
        # An empty response still teaches where the text ends.
        return [r["text"] + response for r in rows for response in r["responses"]]

    def prompt_sets(self, cfg: DictConfig, train: list[dict], heldout: list[dict]):
        if not heldout:
            raise DataError(f"{cfg.data.path}: too few prompts to hold any out")
        return train, heldout

    # ---- the responses and scores the file brings --------------------------------------

    def given_samples_params(self, cfg: DictConfig) -> dict | None:
        # Tokenisation follows from the prompt rows and the SFT tokenizer (both inputs).
        extra = {k: get(cfg, f"data.{k}") for k in TRUNCATION}
        extra = {k: v for k, v in extra.items() if v != TRUNCATION[k]}  # defaults: old key
        return {"given": True, "prompt_tokens": cfg.scale.sample.prompt_tokens, **extra}

    def requires_chat(self, rows: list[dict]) -> bool:
        """Prompts given as chat messages need the model's chat template."""
        return any("messages" in r for r in rows)

    def sft_examples(self, rows: list[dict]) -> list[tuple]:
        # (prompt, response); a chat prompt is its list of messages (rendered by the
        # template); an empty response still teaches where the text ends.
        return [(r.get("messages") or r["text"], x) for r in rows for x in r["responses"]]

    def given_samples(self, cfg: DictConfig, model_dir: Path, rows: list[dict]) -> dict:
        """Prompts as evaluation makes them (framed as the model takes them: a chat prompt's
        messages through its template); each response's tokens + EOS, as a sampled response
        that finished. Too long a prompt or response is cut, dropped or refused by
        ``data.truncation`` (a dropped response keeps its place with a NaN score)."""
        tok = models.load_tokenizer(model_dir)
        fit = fitting.Fit(cfg, tok, models.max_positions(model_dir), self.split(cfg)[0].row)
        prompts, responses = [], []
        for row in rows:
            prompt = fit.prompt(row)
            prompts.append(prompt)
            responses.append([fit.response(row, k, x, len(prompt))
                              for k, x in enumerate(row["responses"])])  # fmt: skip
        fit.report()
        texts = [[self.scored_text(r["text"], x) for x in r["responses"]] for r in rows]
        return {"prompts": prompts, "responses": responses, "texts": texts,
                "dropped": fit.dropped, "truncation": fit.counts}  # fmt: skip

    def given_scores(self, rows: list[dict], samples: dict | None = None) -> np.ndarray:
        """The file's scores; a response the truncation dropped has none (NaN)."""
        scores = scored_files.padded_scores([r["scores"] for r in rows])
        for g, k in (samples or {}).get("dropped", []):
            scores[g, k] = np.nan
        return scores

    # ---- evaluation -----------------------------------------------------------------------

    def columns(self) -> list[str]:
        return ["pair_accuracy", "pair_accuracy_se", "margin", "margin_se", "reward", "reward_se"]

    def heldout_params(self, cfg: DictConfig) -> dict | None:
        # The held-out responses as given_samples frames them, from the prompts stage's
        # rows and the SFT model (both inputs of the heldout stage).
        return self.given_samples_params(cfg)

    def _heldout_logps(self, cfg: DictConfig, model, sft_dir: Path, given: dict) -> np.ndarray:
        """log pi(response | prompt) of every held-out response, once each, in float32
        at any precision: a pair's margin is a difference of two log-ratios of a few
        tenths of a nat on responses of ~100 tokens, below bf16's rounding. Measured on
        SmolLM2 + LoRA (250 x 10 rows, 64 pairs): the same policy scores pair accuracy
        0.730 in float32 and 0.567 under bf16 autocast (fp32 takes 175 s, bf16 110 s)."""
        prompts = [p for p, rs in zip(given["prompts"], given["responses"], strict=True)
                   for _ in rs]  # fmt: skip
        flat = [r for rs in given["responses"] for r in rs]
        pad = models.load_tokenizer(sft_dir).pad_token_id
        return batched_logps(model, prompts, flat, pad, cfg.scale.eval.batch_size, "fp32")

    def heldout_reference(
        self, cfg: DictConfig, reference, sft_dir: Path, rows: list[dict]
    ) -> dict[str, np.ndarray]:
        """The SFT model's log-prob of every held-out response (one pass, shared by every
        evaluation of a sweep)."""
        given = self.given_samples(cfg, sft_dir, rows)
        return {"logps": self._heldout_logps(cfg, reference, sft_dir, given)}

    def eval_extras(
        self,
        cfg: DictConfig,
        policy,
        reference,
        sft_dir: Path,
        rows: list[dict],
        heldout: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Per held-out pair: 1 / 0.5 / 0 as the policy's log-ratio margin is >, =, < 0,
        and the margin itself (log-ratios to the SFT model, chosen minus rejected). One
        log-prob per distinct response (a response is in several pairs); the SFT model's
        from the heldout stage when given (else computed here), and none at all for the SFT
        row itself (its log-ratio to itself is 0)."""
        given = self.given_samples(cfg, sft_dir, rows)
        pairs = scored_files.ragged_pairs(self.given_scores(rows, given))
        starts = np.cumsum([0] + [len(r) for r in given["responses"]])
        if reference is policy:
            ratio = np.zeros(int(starts[-1]))
        else:
            mine = self._heldout_logps(cfg, policy, sft_dir, given)
            theirs = (heldout or {}).get("logps")
            if theirs is None:
                theirs = self._heldout_logps(cfg, reference, sft_dir, given)
            ratio = mine - theirs
        chosen, rejected = starts[pairs[:, 0]] + pairs[:, 1], starts[pairs[:, 0]] + pairs[:, 2]
        margin = ratio[chosen] - ratio[rejected]
        return {"pair_accuracy": (np.sign(margin) + 1) / 2, "margin": margin}


def _check_source(cfg: DictConfig) -> str:
    """data.path (a file or a saved ``datasets`` folder) or data.hf_name, for messages."""
    path, name = get(cfg, "data.path"), get(cfg, "data.hf_name")
    if name is not None:
        if path is not None:
            raise ConfigError(f"data.path={path!r} and data.hf_name={name!r}: set only one")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"data.hf_name={name!r} must be a data set name on the hub")
        for key in ("data.split", "data.revision"):
            if get(cfg, key) is not None and not isinstance(get(cfg, key), str):
                raise ConfigError(f"{key}={get(cfg, key)!r} must be a string")
        return name
    if isinstance(path, str) and Path(path).expanduser().is_dir():
        return path
    if path is None:
        raise ConfigError(
            "data.path=None must be the path of a data file or a saved datasets folder "
            "(or set data.hf_name)"
        )
    return str(data_file(cfg))


@functools.lru_cache(maxsize=4)
def _split(
    read: tuple, stamp: str, fraction: float, seed: int
) -> tuple[scored_files.ScoredData, np.ndarray, np.ndarray]:
    # Read once per run (the check, the keys and the data stage all ask); the files'
    # sizes and modification times are part of the cache key (``stamp``), so an edited
    # file is read again.
    (path, hf_name, split, revision), layout, fields, transform = read
    data = scored_layouts.read_data(
        path, hf_name, split or "train", revision, layout,
        dict(zip(FIELDS, fields, strict=True)), transform,
    )  # fmt: skip
    print(data.layout_line)
    train, heldout = scored_files.split_groups(data.n_groups, fraction, seed)
    return data, train, heldout


TASK = Custom()
