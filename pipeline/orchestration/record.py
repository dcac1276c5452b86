"""What one run records: its identity row and the SFT baseline's, its W&B run, and the
rows it writes to the results folder's tables (``runs.csv``, and ``win_rates.csv`` for a
judged task)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.infra.cache import Artifact, stable_hash
from pipeline.infra.logger import RunLogger, read_csv_log
from pipeline.math.losses import uses_offset
from pipeline.modeling import precision
from pipeline.report import runs, winrates
from pipeline.stages import evaluate, judge, train
from pipeline.tasks.base import Task


def run_name(cfg: DictConfig) -> str:
    parts = [cfg.loss.name, f"b{cfg.loss.beta:g}"]
    if uses_offset(cfg.loss.name):
        parts += [f"a{cfg.loss.alpha:g}", cfg.offset.name]
    return "-".join(parts + [f"n{cfg.n_pairs}", f"s{cfg.seed}"])


def wandb_id(group: str, key: str) -> str:
    """W&B run id: one per (experiment, training run), stable across re-runs."""
    return stable_hash([group, key])[:16]


def identity_row(cfg: DictConfig, pairs: Artifact) -> dict:
    """The columns that say which run a row is (DPO rows: alpha 0, offset "none")."""
    objective = train.loss_identity(cfg)
    return {
        "loss": objective["loss"],
        "beta": objective["beta"],
        "alpha": objective.get("alpha", 0.0),
        "offset": objective.get("offset", "none"),
        "n_pairs": int(pairs.info["n_pairs"]),  # what trained (task=custom may cap it)
        "seed": int(cfg.seed),
        "scale": cfg.scale.name,
        "stand_in": bool(cfg.scale.stand_in),
        **made_with(cfg),
    }


def made_with(cfg: DictConfig) -> dict:
    """Which model and precision made a row: columns only when not the embedded model in
    fp32 (every committed table's), so those tables keep their columns."""
    name = (cfg.get("model") or {}).get("name", "embedded")
    used = precision.of(cfg)
    if name == "embedded" and used == "fp32":
        return {}
    return {"base_model": name, "precision": used}


def baseline_row(cfg: DictConfig, evaluation: Artifact) -> dict:
    """The SFT model's row: its evaluation, with ``loss`` sft."""
    base = {
        "loss": "sft",
        "scale": cfg.scale.name,
        "stand_in": bool(cfg.scale.stand_in),
        **made_with(cfg),
        "eval_key": evaluation.key,
    }
    return base | evaluate.load(evaluation)


def run_logger(cfg: DictConfig, lead: bool, row: dict, train_key: str) -> RunLogger:
    """The run's W&B run (rank 0 only; the others log nowhere), named by its training key."""
    return RunLogger(
        cfg.wandb if lead else None,
        name=run_name(cfg),
        group=cfg.experiment_name,
        tags=[f"{k}={row[k]}" for k in ("loss", "beta", "alpha", "offset", "n_pairs", "seed")],
        config=OmegaConf.to_container(cfg, resolve=True) | {"train_key": train_key},
        wandb_dir=Path(cfg.cache_dir) / "wandb",
        run_id=wandb_id(cfg.experiment_name, train_key),
    )


def replay_training(logger: RunLogger, trained: Artifact) -> None:
    """A reused training run still gets its curves in this W&B run."""
    for values in read_csv_log(trained / "train_log.csv"):
        step = int(values.pop("step"))
        logger.log(values, step)


def judged_rows(cfg: DictConfig, row: dict, judged: Artifact | None) -> list[dict]:
    """A judged task's win-rate rows of one model (none for another task)."""
    return [] if judged is None else winrates.rows_for(row, cfg.judge.name, judge.load(judged))


def finish_row(
    cfg: DictConfig, row: dict, base: dict, arts: dict, logger: RunLogger, task: Task, wins: list
) -> None:
    """The trained run's metrics and keys into ``row``; its summary into W&B."""
    trained, evaluation, clf = arts["train"], arts["evaluate"], arts["classifier"]
    metrics = evaluate.load(evaluation)
    row.update(
        metrics,
        train_seconds=trained.info.get("train_seconds"),
        train_key=trained.key,
        eval_key=evaluation.key,
    )
    logger.summary(
        {f"eval/{k}": v for k, v in metrics.items()}
        | {f"sft/{k}": base[k] for k in (*task.columns(), "kl", "kl_exact") if k in base}
        | {"classifier_accuracy": clf.info.get("accuracy") if clf else None}
        | {
            f"eval/win_rate_T{r['temperature']:g}": r["win_rate"]
            for r in wins
            if r["model"] != "SFT"
        }
    )


def write_tables(cfg: DictConfig, task: Task, base: dict, row: dict, wins: list[dict]) -> None:
    columns = task.columns() + evaluate.columns(cfg)
    runs.upsert(Path(cfg.results_dir) / "runs.csv", [base, row], columns)
    if wins:
        winrates.upsert(Path(cfg.results_dir) / winrates.FILE, wins)
