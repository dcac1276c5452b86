"""One training run of an experiment: the walk of the stage graph (``graph.GRAPH``), each
stage reused from the cache when an identical one has already run, then the run's rows.
Hydra calls ``main`` once per run (``-m`` sweeps call it once per grid point)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline import PROJECT_ROOT, tasks
from pipeline.infra.cache import Cache
from pipeline.infra.errors import PipelineError
from pipeline.infra.hub import set_offline
from pipeline.modeling import distributed
from pipeline.modeling.seeding import configure_threads
from pipeline.orchestration import disk, fingerprint, graph, record, retention
from pipeline.orchestration.validate import validate
from pipeline.stages import train

# The stages every run shares with the others of its sweep (built once, then reused).
SHARED = ("data", "prompts", "sft", "classifier", "sample", "score", "pairs", "reference")


def run_experiment(cfg: DictConfig) -> dict:
    """Run (or reuse) every stage of the graph for one grid point; return its result row.

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
        fingerprint.claim_table(
            Path(cfg.results_dir), fingerprint.fingerprint(cfg), bool(cfg.fresh_table)
        )
    if lead and not in_sweep():  # a sweep checked its whole need before its first job
        disk.check(cfg, n_runs=1)
    cache = Cache(cfg.cache_dir, verify=cfg.verify, follow=not lead)

    def walk(names: tuple[str, ...], **extra: dict) -> None:
        graph.walk(cfg, cache, names, arts, judged=task.judged, lead=lead, extra=extra)

    arts: dict = {}
    walk(SHARED)
    train.check_offsets(cfg, arts["pairs"])
    row = record.identity_row(cfg, arts["pairs"])
    walk(("heldout", "evaluate_sft", "judge_sft"))
    base = record.baseline_row(cfg, arts["evaluate_sft"])
    wins = record.judged_rows(cfg, base, arts.get("judge_sft"))
    train_inputs = [arts[name] for name in graph.BY_NAME["train"].inputs]
    logger = record.run_logger(cfg, lead, row, train.key(cfg, cache, train_inputs))
    failed = True
    try:
        walk(("train",), train={"logger": logger})
        again = retention.weights_needed_again(cfg, cache, arts)
        if distributed.agree(cfg, again):  # rank 0's answer on every rank
            if lead:
                print(
                    f"[train] {arts['train'].key}: weights were deleted; training again to evaluate"
                )
                cache.discard(arts["train"])
            walk(("train",), train={"logger": logger})
        if not lead:  # rank 0 evaluates and records the run; this rank waits for it
            failed = False
            distributed.finish(cfg)
            return row
        if not arts["train"].computed:
            record.replay_training(logger, arts["train"])
        walk(("evaluate", "judge"))  # the judge before the weights may go
        wins += record.judged_rows(cfg, row, arts.get("judge"))
        arts["train"] = retention.release_weights(cfg, cache, arts["train"])
        record.finish_row(cfg, row, base, arts, logger, task, wins)
        failed = False
    finally:
        logger.finish(failed=failed)

    record.write_tables(cfg, task, base, row, wins)
    distributed.finish(cfg)  # the followers leave with rank 0
    print(f"[run] {record.run_name(cfg)}: "
          f"{task.describe(row, base, arts['classifier'].info if arts['classifier'] else {})}, "
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
