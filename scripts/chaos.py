"""Fault injection and the kill-and-resume check (``make chaos``).

The fault points it sets (``PIPELINE_KILL_AT``) are named in ``pipeline/infra/faults.py``.

``python -m scripts.chaos --rounds N --seed S`` kills a micro-scale run with a
real ``kill -9`` at times drawn from the seed, runs the same command again, and
checks that the final run table equals that of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.infra.faults import ENV

# Columns that measure time, not results: allowed to differ between runs.
TIMING_COLUMNS = ("train_seconds",)


def command(workdir: Path, extra: list[str] | None = None) -> list[str]:
    """The micro-scale run every round repeats, with its cache and results in ``workdir``."""
    return [
        sys.executable,
        "-m",
        "pipeline",
        "scale=micro",
        "wandb.mode=disabled",
        f"cache_dir={workdir / 'cache'}",
        f"results_dir={workdir / 'results'}",
        f"hydra.run.dir={workdir / 'hydra'}",
        *(extra or []),
    ]


def environment(kill_at: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }
    env.pop(ENV, None)
    if kill_at:
        env[ENV] = kill_at
    return env


def run(workdir: Path, kill_at: str | None = None, kill_after: float | None = None,
        extra: list[str] | None = None) -> tuple[int, str]:  # fmt: skip
    """Run once; ``kill_at`` injects a kill at a named point, ``kill_after`` sends a
    real SIGKILL after that many seconds. Returns (exit code, stdout + stderr)."""
    proc = subprocess.Popen(
        command(workdir, extra),
        env=environment(kill_at),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def table(workdir: Path) -> str:
    """The run table without its timing columns, as CSV text (what must match)."""
    import pandas as pd

    df = pd.read_csv(workdir / "results" / "runs.csv")
    return df.drop(columns=[c for c in TIMING_COLUMNS if c in df]).to_csv(index=False)


def reference_run(workdir: Path, extra: list[str] | None = None) -> tuple[str, float]:
    """An uninterrupted run: its table (without timings) and how long it took."""
    start = time.perf_counter()
    code, out = run(workdir, extra=extra)
    if code != 0:
        raise RuntimeError(f"the uninterrupted reference run failed:\n{out[-2000:]}")
    return table(workdir), time.perf_counter() - start


def progress(workdir: Path) -> str:
    """Where a killed run was: the stages it had finished and any checkpoint it left."""
    path = workdir / "cache" / "ledger.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    done = [json.loads(line)["stage"] for line in lines]
    checkpoints = sorted(
        p.parent.parent.name for p in (workdir / "cache").glob("*/.ckpt-*/state.pt")
    )
    text = f"after {len(done)} stages, last {done[-1]}" if done else "before any stage finished"
    return text + (f"; checkpoint in {', '.join(checkpoints)}" if checkpoints else "")


def rounds(
    n: int,
    seed: int,
    base: Path,
    extra: list[str] | None = None,
    reference: tuple[str, float] | None = None,
) -> dict:
    """``n`` kill-and-resume rounds, each from an empty cache with a kill -9 at a time
    drawn uniformly from (0.5 s, the reference run's duration); returns the counts."""
    rng = random.Random(seed)
    reference, reference_seconds = reference or reference_run(base / "reference", extra)
    killed = survived = matched = 0
    for i in range(n):
        workdir = base / f"round{i}"
        when = rng.uniform(0.5, reference_seconds)
        code, _ = run(workdir, kill_after=when, extra=extra)
        was_killed = code == -signal.SIGKILL
        killed += was_killed
        where = progress(workdir) if was_killed else "had already finished"
        code, out = run(workdir, extra=extra)
        ok = code == 0
        survived += ok and was_killed
        same = ok and table(workdir) == reference
        matched += same
        print(
            f"[chaos] round {i + 1}/{n}: kill -9 at {when:.1f}s ({where}), rerun "
            f"{'finished' if ok else f'FAILED ({code})'}, table "
            f"{'matches' if same else 'DIFFERS'}",
            flush=True,
        )
        if not ok:
            print(out[-2000:])
    return {"rounds": n, "killed": killed, "survived": survived, "matched": matched}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="kill-and-resume rounds")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill times")
    parser.add_argument("--keep", action="store_true", help="keep the round folders")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="chaos-"))
    try:
        counts = rounds(args.rounds, args.seed, tmp)
    finally:
        if args.keep:
            print(f"[chaos] round folders kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"[chaos] {counts['survived']} of {counts['killed']} kills survived "
        f"({counts['rounds']} rounds, seed {args.seed}); final tables matched the "
        f"uninterrupted run in {counts['matched']} of {counts['rounds']} rounds"
    )
    return 0 if counts["matched"] == counts["rounds"] else 1


if __name__ == "__main__":
    sys.exit(main())
