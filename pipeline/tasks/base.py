"""What a task is: the seam between the generic stages and one experiment.

A task is one module ``pipeline/tasks/<name>.py`` that defines ``TASK`` (an instance of a
``Task`` subclass) and one config ``conf/task/<name>.yaml`` that sets ``task.name`` and the
task's data, scorer and lengths per scale. The stages ask the task; none tests a name.
A subclass overrides only what differs from these defaults (sentiment's behaviour).
"""

from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline.infra.checks import at_most, choice, data_file, get, hub_or_local, number
from pipeline.infra.errors import DataError
from pipeline.infra.hub import require_dataset
from pipeline.math import rewards
from pipeline.modeling.inference import make_prompts


class Task:
    name = "task"
    # The evaluation score: the scorer's probability of one label, averaged over one sample
    # per evaluation prompt. ``metric`` names its runs.csv column (and ``<metric>_se``).
    metric = "reward"
    metric_label = "eval reward"  # y axis of the figures
    # Whether a higher scorer probability is better. False (toxicity) flips the training
    # score (the good label is the other one), the frontiers and the head-to-head.
    higher_is_better = True
    # What the scorer reads: "prompt+response" (sentiment: the whole review) or "response"
    # (toxicity: only the continuation is the model's doing).
    scored = "prompt+response"
    # Appended to figure titles and summaries of stand-in results (scale.stand_in).
    stand_in_note = "embedded stand-in, not the paper's models or data"
    # The names ``sample_metrics`` returns (runs.csv columns beside the metric).
    extra_metrics: tuple[str, ...] = ()
    # Data sources this task reads (data.source); checked at start-up.
    sources: tuple[str, ...] = ()
    # Whether the held-out rows carry labels to measure the scorer's accuracy on.
    labelled = True
    # The column of a scorer's mean probability: the metric itself, unless the task's
    # metric is something else (task=custom's pair accuracy).
    scorer_metric: str | None = None
    # n_pairs above the pairs available: refused (False), or every pair used (True).
    cap_pairs = False
    # Whether the prompts are instructions (an instruct model then takes them through its
    # chat template under model.chat_template=auto) or text to continue (sentiment).
    chat_prompts = False

    # ---- start-up -----------------------------------------------------------------------

    def check(self, cfg: DictConfig) -> None:
        """Refuse this task's own bad settings (data.*) with one line, before any work."""
        if self.sources:
            choice(cfg, "data.source", self.sources)
        if get(cfg, "data.heldout_fraction") is not None:
            number(cfg, "data.heldout_fraction")
            at_most(cfg, "data.heldout_fraction", 1, strict=True)
        number(cfg, "data.split_seed", strict=False, integer=True)
        if get(cfg, "data.source") == "local":
            data_file(cfg)
        if get(cfg, "data.source") == "hub":
            hub_or_local(cfg, "data.name", require_dataset)

    def pairs_used(self, cfg: DictConfig) -> int:
        """How many pairs a run trains on (part of the pairs stage's key)."""
        return int(cfg.n_pairs)

    def reference_scope(self, cfg: DictConfig) -> str:
        """Which responses the reference stage scores: "all" of the sample set (one
        artifact for every seed and data size of a sweep) or only those the run's "pairs"
        use (a set much larger than its pairs). A sampled set is sized for its pairs."""
        return "all"

    def max_pairs(self, cfg: DictConfig) -> tuple[int, str]:
        """The most pairs a sample set can give, and what bounds it (for n_pairs)."""
        n, k = cfg.scale.sample.n_prompts, cfg.scale.sample.n_samples
        return n * comb(k, 2), f"pairs that {n} prompts x {k} samples can give"

    # ---- data ---------------------------------------------------------------------------

    def load_splits(self, cfg: DictConfig) -> tuple[list[dict], list[dict]]:
        """(train rows, held-out rows), each ``{"text", "label"}``: the SFT text (and the
        classifier's training rows), and the texts that prompts are drawn from."""
        raise NotImplementedError

    def prompt_sets(
        self, cfg: DictConfig, train: list[dict], heldout: list[dict]
    ) -> tuple[list[dict], list[dict]]:
        """Disjoint (sampling, evaluation) prompt rows, by a fixed seed (``data.split_seed``)
        so every run and seed shares them: here both from the held-out rows."""
        n_sample, n_eval = cfg.scale.sample.n_prompts, cfg.scale.eval.n_prompts
        if n_sample + n_eval > len(heldout):
            raise DataError(
                f"scale.sample.n_prompts={n_sample} + scale.eval.n_prompts={n_eval} prompts "
                f"are needed but the held-out split has {len(heldout)} texts "
                "(raise data.heldout_fraction)"
            )
        chosen = np.random.default_rng(cfg.data.split_seed).choice(
            len(heldout), n_sample + n_eval, replace=False
        )
        return [heldout[i] for i in chosen[:n_sample]], [heldout[i] for i in chosen[n_sample:]]

    def sft_texts(self, rows: list[dict]) -> list[str]:
        """The SFT model's training texts from the training split's rows."""
        return [r["text"] for r in rows]

    def requires_chat(self, rows: list[dict]) -> bool:
        """Whether these rows can only be read through a chat template (chat messages)."""
        return False

    def sft_examples(self, rows: list[dict]) -> list[tuple[str, str]]:
        """SFT examples as (prompt, response): plain text is ("", text); a task whose texts
        are a prompt and its answer says so, for chat templates (summarize)."""
        return [("", t) for t in self.sft_texts(rows)]

    # ---- responses a task brings itself (task=custom) ----------------------------------

    def given_samples_params(self, cfg: DictConfig) -> dict | None:
        """The sample stage's key when the task brings its responses (None: it samples)."""
        return None

    def given_samples(self, cfg: DictConfig, model_dir: Path, rows: list[dict]) -> dict | None:
        """The sample set packaged as sampling packages it, or None to sample."""
        return None

    def given_scores(self, rows: list[dict], samples: dict | None = None) -> np.ndarray | None:
        """Training scores (n_prompts, most responses; NaN where a prompt has fewer) that
        the task brings, or None to score with the scorer; ``samples``: what
        ``given_samples`` packaged (it may have dropped responses)."""
        return None

    # ---- prompts ------------------------------------------------------------------------

    def prompt_ids(self, tok, texts: list[str], prompt_tokens: int) -> list[list[int]]:
        """Token ids of prompts for sampling: BOS + the text's first ``prompt_tokens``."""
        return make_prompts(tok, texts, prompt_tokens)

    # ---- scoring ------------------------------------------------------------------------

    # Whether a judge compares the policy's outputs with human ones at several sampling
    # temperatures after training (pipeline/stages/judge.py; task=summarize).
    judged = False
    # Whether the task rates its sampled responses itself (``rate_samples``), so that it
    # needs no scorer.
    rates_own_samples = False

    def rate_samples(
        self, cfg: DictConfig, rows: list[dict], texts: list[list[str]], prompts: Path
    ) -> np.ndarray | None:
        """Training scores the task computes itself from the sampled texts (n_prompts,
        n_samples), or None to score with the scorer. ``prompts``: the prompts stage's folder."""
        return None

    def response_metrics(
        self, cfg: DictConfig, rows: list[dict], texts: list[str], prompts: Path
    ) -> dict[str, np.ndarray]:
        """Per-sample evaluation values the task computes from the evaluation samples'
        texts (one per row of ``rows``), each averaged with its standard error."""
        return {}

    def scored_text(self, prompt: str, response: str) -> str:
        return response if self.scored == "response" else prompt + response

    def good_probability(self, p: np.ndarray) -> np.ndarray:
        """The probability of the good label from the scorer's probability."""
        return rewards.good_probability(p, self.higher_is_better)

    def eval_extras(
        self,
        cfg: DictConfig,
        policy,
        reference,
        sft_dir: Path,
        rows: list[dict],
        heldout: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-item evaluation values that need the two models (not the scorer), each
        averaged with its standard error; ``rows``: the evaluation prompt rows;
        ``heldout``: what ``heldout_reference`` gave for them (None: the task has none)."""
        return {}

    def heldout_params(self, cfg: DictConfig) -> dict | None:
        """The key of the SFT model's values on the held-out set that ``eval_extras``
        compares every policy with (the heldout stage computes them once per sweep), or
        None when the task has none."""
        return None

    def heldout_reference(
        self, cfg: DictConfig, reference, sft_dir: Path, rows: list[dict]
    ) -> dict[str, np.ndarray]:
        """Those values, from the SFT model ``reference`` on the evaluation rows."""
        return {}

    def sample_metrics(self, p: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sample evaluation values beyond the metric itself, named in
        ``extra_metrics`` (each averaged, with its standard error, into ``<name>`` and
        ``<name>_se``)."""
        return {}

    # ---- what a stage's key needs to know -----------------------------------------------

    def key_settings(self, cfg: DictConfig, stage: str) -> dict:
        """The task's own settings (``task.*``) that change a stage's output, for its key."""
        return {}

    def key_extras(self, stage: str) -> dict:
        """Task choices that change a stage's output, for its cache key: the task itself
        for the data (two tasks may read the same file differently), and any choice that
        differs from the defaults (sentiment's, whose keys predate the task seam)."""
        extras: dict = {"task": self.name} if stage == "data" else {}
        if stage == "sample" and self.scored != Task.scored:
            extras["scored"] = self.scored
        if stage == "score" and self.higher_is_better is not Task.higher_is_better:
            extras["higher_is_better"] = self.higher_is_better
        if stage == "evaluate" and self.columns() != Task().columns():
            extras["metrics"] = self.columns()
        return extras

    # ---- results ------------------------------------------------------------------------

    def describe(self, row: dict, base: dict, classifier_info: dict) -> str:
        """The end-of-run summary line: metric and KL of the run, and the SFT baseline's."""
        m = self.metric
        text = (
            f"{m} {row[m]:.3f}±{row[f'{m}_se']:.3f}, KL {row['kl']:.3f}±{row['kl_se']:.3f} "
            f"(exact {row['kl_exact']:.3f}"
        )
        if row.get("kl_with_prompt") is not None:
            text += f", with prompt tokens {row['kl_with_prompt']:.3f}"
        text += f"), SFT {m} {base[m]:.3f}"
        if classifier_info.get("accuracy") is not None:
            text += f", classifier acc {classifier_info['accuracy']:.3f}"
        return text

    def columns(self) -> list[str]:
        """runs.csv's result columns, after the identity columns."""
        names = [self.metric, f"{self.metric}_se"]
        for extra in self.extra_metrics:
            names += [extra, f"{extra}_se"]
        return names


def heldout_split(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A fixed (train, held-out) split, independent of the run seed, so every run shares it."""
    order = np.random.default_rng(seed).permutation(len(rows))
    n_test = int(round(len(rows) * fraction))
    return [rows[i] for i in order[n_test:]], [rows[i] for i in order[:n_test]]
