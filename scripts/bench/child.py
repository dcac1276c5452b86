"""One measured piece, in a process of its own so that its peak memory is its own.

``python -m scripts.bench.child PIECE ARGS.json OUT.json`` runs ``PIECES[PIECE]``
with the keyword arguments in ARGS.json (plus ``threads``) and writes its result to
OUT.json. The parent (``run_isolated``) waits for it with ``os.wait4``, which gives
that one child's resource usage: ``ru_maxrss`` is the peak resident set of the child
alone (its imports included), not of the parent or of earlier children.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import PROJECT_ROOT


def _pieces() -> dict:
    from scripts.bench import data_rows, optimizer, sampling, smollm2, stage_pieces, training

    return {
        "baseline": lambda: {},  # the imports alone: what every piece's peak starts from
        "throughput": training.throughput,
        "loss_equality": training.loss_equality,
        "run_seconds": training.run_seconds,
        "reference_pass": stage_pieces.reference_pass,
        "sft_steps": stage_pieces.sft_steps,
        "evaluate_kl": stage_pieces.evaluate_kl,
        "profile": training.profile,
        "sample_batched": sampling.batched,
        "sample_sequential": sampling.sequential,
        "optimizer_update": optimizer.update,
        "smollm2_training": smollm2.training,
        "smollm2_sampling": smollm2.sampling,
        "read_pairs": data_rows.read_pairs,
    }


QUIET_ENV = {
    "TQDM_DISABLE": "1",  # read when tqdm is imported (torch imports it): set before torch
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def quiet_env() -> None:
    for var, value in QUIET_ENV.items():
        os.environ.setdefault(var, value)


def quiet() -> None:
    """No progress bars or library chatter in the measured processes."""
    quiet_env()
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def run_piece(name: str, kwargs: dict, threads: int) -> dict:
    """Run one piece here, with ``threads`` torch threads (restored afterwards)."""
    quiet()
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        result = _pieces()[name](**kwargs)
    finally:
        torch.set_num_threads(before)
    result["piece_seconds"] = time.perf_counter() - start
    result["load_before"] = load
    result["load_after"] = os.getloadavg()[0]
    result["threads"] = threads
    return result


def run_isolated(name: str, kwargs: dict, threads: int, python: str = sys.executable) -> dict:
    """``run_piece`` in a child process; adds ``peak_rss_mb`` (the child's own peak)."""
    with tempfile.TemporaryDirectory(prefix="bench-piece-") as tmp:
        args, out, log = Path(tmp) / "args.json", Path(tmp) / "out.json", Path(tmp) / "log.txt"
        args.write_text(json.dumps({**kwargs, "threads": threads}))
        env = {
            **os.environ,
            **QUIET_ENV,
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
        }
        start = time.perf_counter()
        with open(log, "wb") as sink:  # progress bars and warnings: kept out of the report's way
            proc = subprocess.Popen(
                [python, "-m", "scripts.bench.child", name, str(args), str(out)],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out.is_file():
            tail = log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"bench piece {name} exited with {proc.returncode}: ...{tail}")
        result = json.loads(out.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["process_seconds"] = wall
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


def main(argv: list[str]) -> None:
    quiet_env()
    name, args_path, out_path = argv
    kwargs = json.loads(Path(args_path).read_text())
    threads = int(kwargs.pop("threads"))
    result = run_piece(name, kwargs, threads)
    tmp = Path(out_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main(sys.argv[1:])
