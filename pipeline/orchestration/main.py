"""One training run of an experiment: every stage in order, each reused from the
cache when an identical one has already run. Hydra calls ``main`` once per run
(``-m`` sweeps call it once per grid point)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline import PROJECT_ROOT, tasks
from pipeline.infra.cache import Cache, stable_hash
from pipeline.infra.errors import PipelineError
from pipeline.infra.hub import set_offline
from pipeline.infra.logger import RunLogger, read_csv_log
from pipeline.math.losses import uses_offset
from pipeline.modeling import distributed
from pipeline.modeling.seeding import configure_threads
from pipeline.orchestration import disk
from pipeline.orchestration.validate import validate
from pipeline.report import runs as results
from pipeline.report import winrates
from pipeline.stages import (
    classifier,
    data,
    evaluate,
    judge,
    pairs,
    prompts,
    reference,
    sample,
    score,
    sft,
    train,
)


def run_name(cfg: DictConfig) -> str:
    parts = [cfg.loss.name, f"b{cfg.loss.beta:g}"]
    if uses_offset(cfg.loss.name):
        parts += [f"a{cfg.loss.alpha:g}", cfg.offset.name]
    return "-".join(parts + [f"n{cfg.n_pairs}", f"s{cfg.seed}"])


def wandb_id(group: str, key: str) -> str:
    """W&B run id: one per (experiment, training run), stable across re-runs."""
    return stable_hash([group, key])[:16]


def run_experiment(cfg: DictConfig) -> dict:
    """Run (or reuse) every stage for one grid point; return its result row.

    In a distributed launch (``distributed=fsdp``) every rank calls this: rank 0 runs
    the stages, the others follow (their cache waits for rank 0's artifacts), all train
    together, and rank 0 alone evaluates and records the run (``pipeline.modeling.distributed``)."""
    t0 = time.perf_counter()
    set_offline(cfg.offline)
    distributed.adopt_slurm_tasks(cfg)
    validate(cfg)
    task = tasks.get(cfg)
    configure_threads(cfg.threads)
    lead = distributed.is_main()  # rank 0, or the only process
    if lead:
        results.claim_table(Path(cfg.results_dir), results.fingerprint(cfg), bool(cfg.fresh_table))
    if lead and not in_sweep():  # a sweep checked its whole need before its first job
        disk.check(cfg, n_runs=1)
    cache = Cache(cfg.cache_dir, verify=cfg.verify, follow=not lead)

    data_art = data.run(cfg, cache)
    prompts_art = prompts.run(cfg, cache, data_art)
    sft_art = sft.run(cfg, cache, data_art)
    clf_art = classifier.run(cfg, cache, data_art)
    samples_art = sample.run(cfg, cache, sft_art, prompts_art)
    scores_art = score.run(cfg, cache, samples_art, clf_art, prompts_art)
    pairs_art = pairs.run(cfg, cache, scores_art)
    ref_art = reference.run(cfg, cache, sft_art, samples_art)
    train.check_offsets(cfg, pairs_art)

    objective = train.loss_identity(cfg)  # DPO rows: alpha 0, offset "none"
    row = {
        "loss": objective["loss"],
        "beta": objective["beta"],
        "alpha": objective.get("alpha", 0.0),
        "offset": objective.get("offset", "none"),
        "n_pairs": int(pairs_art.info["n_pairs"]),  # what trained (task=custom may cap it)
        "seed": int(cfg.seed),
        "scale": cfg.scale.name,
        "stand_in": bool(cfg.scale.stand_in),
    }
    # The SFT model is evaluated once (same eval prompts and seed) as the baseline row.
    base_art = evaluate.run(cfg, cache, sft_art, sft_art, clf_art, prompts_art)
    base = {
        "loss": "sft",
        "scale": cfg.scale.name,
        "stand_in": bool(cfg.scale.stand_in),
        "eval_key": base_art.key,
    }
    base.update(evaluate.load(base_art))
    judged: list[dict] = []  # win-rate rows of a judged task (task=summarize)
    if task.judged and lead:
        judged += winrates.rows_for(
            base, cfg.judge.name, judge.load(judge.run(cfg, cache, sft_art, sft_art, prompts_art))
        )
    train_key = train.key(cfg, cache, [sft_art, samples_art, pairs_art, ref_art])
    logger = RunLogger(
        cfg.wandb if lead else None,
        name=run_name(cfg),
        group=cfg.experiment_name,
        tags=[f"{k}={row[k]}" for k in ("loss", "beta", "alpha", "offset", "n_pairs", "seed")],
        config=OmegaConf.to_container(cfg, resolve=True) | {"train_key": train_key},
        wandb_dir=Path(cfg.cache_dir) / "wandb",
        run_id=wandb_id(cfg.experiment_name, train_key),
    )
    failed = True
    try:
        train_art = train.run(cfg, cache, sft_art, samples_art, pairs_art, ref_art, logger)
        eval_inputs = [train_art, sft_art, clf_art, prompts_art]
        again = train_art.info.get("weights_deleted") and not evaluate.published(
            cfg, cache, eval_inputs
        )
        if distributed.agree(cfg, again):  # rank 0's answer on every rank
            # Its weights went after an evaluation this run cannot reuse: train again.
            if lead:
                print(f"[train] {train_art.key}: weights were deleted; training again to evaluate")
                cache.discard(train_art)
            train_art = train.run(cfg, cache, sft_art, samples_art, pairs_art, ref_art, logger)
        if not lead:  # rank 0 evaluates and records the run
            failed = False
            return row
        if not train_art.computed:
            # A reused training run still gets its curves in this W&B run.
            for r in read_csv_log(train_art / "train_log.csv"):
                step = int(r.pop("step"))
                logger.log(r, step)
        eval_art = evaluate.run(cfg, cache, train_art, sft_art, clf_art, prompts_art)
        metrics = evaluate.load(eval_art)
        if task.judged:  # before the weights may go (keep_weights=false)
            judge_art = judge.run(cfg, cache, train_art, sft_art, prompts_art)
            judged += winrates.rows_for(row, cfg.judge.name, judge.load(judge_art))
        if not cfg.keep_weights and not train_art.info.get("weights_deleted"):
            # The evaluation is published and stands on its own; the policy is the
            # bulk of a paper-scale sweep's disk. The manifest records the deletion.
            weights = [f"model/{p.name}" for p in (train_art / "model").glob("*.safetensors")]
            train_art = cache.forget_files(train_art, weights, {"weights_deleted": True})
        row.update(
            metrics,
            train_seconds=train_art.info.get("train_seconds"),
            train_key=train_art.key,
            eval_key=eval_art.key,
        )
        logger.summary(
            {f"eval/{k}": v for k, v in metrics.items()}
            | {f"sft/{k}": base[k] for k in (*task.columns(), "kl", "kl_exact") if k in base}
            | {"classifier_accuracy": clf_art.info.get("accuracy") if clf_art else None}
            | {
                f"eval/win_rate_T{r['temperature']:g}": r["win_rate"]
                for r in judged
                if r["model"] != "SFT"
            }
        )
        failed = False
    finally:
        logger.finish(failed=failed)

    columns = task.columns() + evaluate.columns(cfg)
    results.upsert(Path(cfg.results_dir) / "runs.csv", [base, row], columns)
    if judged:
        winrates.upsert(Path(cfg.results_dir) / winrates.FILE, judged)
    print(f"[run] {run_name(cfg)}: {task.describe(row, base, clf_art.info if clf_art else {})}, "
          f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
    return row


def in_sweep() -> bool:
    """True inside a Hydra multirun job (its disk need was checked at the sweep's start)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def cli(cfg: DictConfig) -> dict:
    """``run_experiment`` as the command line sees it: a user's mistake is one
    ``error: ...`` line on stderr and exit code 1, never a traceback."""
    try:
        return run_experiment(cfg)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def check_choices(argv: list[str], conf_dir: Path = PROJECT_ROOT / "conf") -> None:
    """Refuse an unknown config group option (``loss=ipo``, also inside a ``-m`` sweep
    list) with one line, before Hydra composes the config and prints its own message."""
    for arg in argv:
        key, sep, values = arg.partition("=")
        group = conf_dir / key
        if arg.startswith(("-", "+", "~")) or not sep or key.startswith("hydra"):
            continue
        if not group.is_dir() or "$" in values:
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for value in values.split(","):
            if value.strip() not in options and value.strip() != "null":
                print(f"error: {key}={value.strip()} is unknown; choose one of {options}",
                      file=sys.stderr)  # fmt: skip
                sys.exit(1)


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> dict | None:
    return cli(cfg)
