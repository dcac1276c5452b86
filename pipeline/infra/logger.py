"""One small logging interface with W&B, CSV-on-disk and console behind it."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any


class RunLogger:
    """Logs step metrics and final metrics. ``finish()`` must always be called."""

    def __init__(
        self,
        wandb_cfg: Any | None = None,
        name: str = "",
        group: str = "",
        tags: list[str] | None = None,
        config: dict | None = None,
        wandb_dir: str | Path = ".",
        run_id: str | None = None,
    ) -> None:
        self.run = None
        if wandb_cfg is not None and wandb_cfg.mode != "disabled":
            import wandb

            # Credentials come from the environment (WANDB_API_KEY) only, never from config.
            Path(wandb_dir).mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("WANDB_SILENT", "true")
            self.run = wandb.init(
                project=wandb_cfg.project,
                entity=wandb_cfg.entity,
                mode=wandb_cfg.mode,
                group=group,
                name=name,
                tags=tags,
                dir=str(wandb_dir),
                # A fixed id per training run: re-running a sweep (or resuming a killed
                # one) updates the same W&B run instead of adding duplicates.
                id=run_id,
                resume="allow" if run_id else None,
                reinit="finish_previous",
                settings=wandb.Settings(console="off", x_disable_stats=True),
            )
            # A resumed run may see changed values that do not define the run (paths).
            self.run.config.update(config or {}, allow_val_change=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def finish(self, failed: bool = False) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None


class CSVLog:
    """Per-step metrics written as CSV (kept beside the trained model)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.rows.append({"step": step, **metrics})

    def close(self) -> None:
        if not self.rows:
            return
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)


def read_csv_log(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
