"""Stage 9, judge (a judged task: task=summarize): a model's summary of each held-out prompt
at each sampling temperature (``task.temperatures``; 0 is greedy), compared by the judge
(``judge=offline|openai``, ``pipeline.scoring.judges``) with the human-written summary of the same
document. Writes ``win_rates.json`` (per temperature: wins, n, the win rate with its Wilson
95% interval, unparseable answers, ties, calls, cache hits, retries) and
``judgements.jsonl`` (every comparison). The SFT model and every trained policy are judged
on the same prompts with the same sampling seed.

A published judgement is reused like any stage, so a re-run asks the judge nothing; the
OpenAI judge also keeps every answer under ``<cache_dir>/judge/``, keyed by its request,
so a judgement recomputed for another reason repeats no call either."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import tasks
from pipeline.infra.cache import Artifact, Cache, atomic_write_json
from pipeline.infra.io import read_jsonl, write_jsonl
from pipeline.modeling import inference
from pipeline.modeling import precision as precisions
from pipeline.scoring import judges
from pipeline.scoring.verdicts import Comparison

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# judge.* settings that change how answers are fetched, not what they are.
RUNTIME = ("concurrency", "max_retries", "backoff_s", "max_backoff_s", "timeout_s")


def identity(cfg: DictConfig) -> dict:
    """What decides the verdicts: the judge's settings but those of ``RUNTIME``."""
    judge = OmegaConf.to_container(cfg.judge, resolve=True)
    return {k: v for k, v in judge.items() if k not in RUNTIME}


def params(cfg: DictConfig) -> dict:
    return {
        "judge": identity(cfg),
        "temperatures": [float(t) for t in cfg.task.temperatures],
        "eval_seed": cfg.scale.eval.seed,
        "prompt_tokens": cfg.scale.sample.prompt_tokens,
        "max_new_tokens": cfg.scale.sample.max_new_tokens,
        "sample_batch_size": cfg.scale.sample.batch_size,
        **tasks.get(cfg).key_extras("judge"),
        **precisions.key(cfg),
    }


def make_judge(cfg: DictConfig, cache: Cache, prompts: Path):
    """The configured judge; the offline one rates with the task's rater (word weights
    from the documents in the prompts stage's folder)."""
    j = cfg.judge
    if j.name == "offline":
        return judges.get("offline")(tasks.get(cfg).rater(prompts))
    return judges.get(j.name)(
        cache_dir=cache.root / "judge",
        model=j.model,
        concurrency=int(j.concurrency),
        seed=int(j.seed),
        temperature=float(j.temperature),
        max_tokens=int(j.max_tokens),
        max_retries=int(j.max_retries),
        backoff_s=float(j.backoff_s),
        timeout_s=float(j.timeout_s),
        document_name=str(j.document_name),
    )


def run(
    cfg: DictConfig, cache: Cache, model: Artifact, sft: Artifact, prompts: Artifact
) -> Artifact:
    """Judge ``model`` (a train artifact, or the SFT artifact for the baseline)."""
    task, sample_cfg = tasks.get(cfg), cfg.scale.sample

    def build(out: Path) -> dict:
        rows = read_jsonl(prompts / "eval_prompts.jsonl", required=("text", "reference"))
        judge = make_judge(cfg, cache, prompts.path)
        texts = [r["text"] for r in rows]
        per_temperature, judged = [], []
        for t in cfg.task.temperatures:
            drawn = inference.generate(
                model / "model", texts, sample_cfg, 1, cfg.scale.eval.seed, cfg.device,
                temperature=float(t), top_p=1.0, join=lambda _, response: response,
                precision=precisions.of(cfg), prompt_ids=task.prompt_ids,
            )  # fmt: skip
            summaries = [s[0].strip() for s in drawn["texts"]]
            items = [
                Comparison(str(r["id"]), r["document"], s, r["reference"])
                for r, s in zip(rows, summaries, strict=True)
            ]
            report = judge.compare(items)
            counts = {"temperature": float(t), **report.counts()}
            per_temperature.append(counts)
            judged += [
                {
                    "temperature": float(t),
                    "id": v.id,
                    "summary": s,
                    "model_wins": v.model_wins,
                    "answer": v.answer,
                }  # fmt: skip
                for v, s in zip(report.verdicts, summaries, strict=True)
            ]
            print(
                f"[judge] {judge.name} T={float(t):g}: {counts['wins']}/{counts['n']} wins "
                f"({counts['win_rate']:.3f}, 95% CI {counts['ci_low']:.3f}-{counts['ci_high']:.3f})"
                + (f", {counts['unparseable']} unparseable" if counts["unparseable"] else "")
            )
        atomic_write_json(out / "win_rates.json", per_temperature)
        write_jsonl(out / "judgements.jsonl", judged)
        return {
            "calls": sum(c["calls"] for c in per_temperature),
            "cached": sum(c["cached"] for c in per_temperature),
            "unparseable": sum(c["unparseable"] for c in per_temperature),
        }

    return cache.stage("judge", params(cfg), [model, sft, prompts], build, version=VERSION)


def load(artifact: Artifact) -> list[dict]:
    return json.loads((artifact / "win_rates.json").read_text())
