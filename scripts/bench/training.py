"""The measured training pieces (``child.py`` runs them): DPO training measured two ways
on the same model, pairs, batch and lengths:

- ours (``ours.py``): the pipeline's real loop, ``pipeline.stages.train.train_pairs``,
  with the reference log-probs computed beforehand by
  ``pipeline.modeling.inference.batched_logps`` (the reference stage's function), timed
  apart;
- TRL's ``DPOTrainer`` (``trl_side.py``; TRL is no pipeline dependency), configured to
  match, with its reference log-probs precomputed or computed at every step.

Pairs/s of each side, the loss of each side's first steps from the same weights,
seconds per whole training run, and pyinstrument profiles. Everything returns plain
JSON-able dicts (the parent process writes the report).
"""

from __future__ import annotations

import tempfile

from omegaconf import DictConfig, OmegaConf

from scripts.bench import synthetic as syn
from scripts.bench.ours import Timed, median, reference_table, run_ours
from scripts.bench.synthetic import DataSpec, ModelSpec
from scripts.bench.trl_side import make_trainer, run_trl, trl_args, trl_version


def _subset(p: dict, n: int) -> dict:
    return {k: v[:n] for k, v in p.items()}


def _setup(spec: dict, data: dict, scale: str, n_pairs: int, seed: int):
    mspec, dspec = ModelSpec(**spec), DataSpec(**data)
    cfg = syn.run_cfg(syn.compose_cfg(scale), seed)
    samples = syn.make_samples(mspec, dspec, seed)
    p = syn.make_pairs(samples, n_pairs, seed)
    model = syn.build_model(mspec, seed)
    return mspec, cfg, samples, p, model


def _runner(side: str, cfg: DictConfig, mspec: ModelSpec, model, samples: dict, tmp: str):
    """``once(pairs) -> (the timed call, its reference pass's seconds)`` for one side,
    each call from the same initial weights (a fresh copy, optimizer and trainer)."""
    if side == "ours":
        eval_bs = int(cfg.scale.eval.batch_size)
        ref_model = syn.clone(model).eval()

        def once(pairs: dict) -> tuple[Timed, float]:
            table, ref_seconds = reference_table(ref_model, samples, pairs, eval_bs)
            return run_ours(cfg, syn.clone(model), samples, pairs, table), ref_seconds

    elif side in ("trl", "trl_precompute"):
        precompute = side == "trl_precompute"

        def once(pairs: dict) -> tuple[Timed, float]:
            ref = None if precompute else syn.clone(model).eval()
            trainer = make_trainer(
                cfg, mspec, syn.clone(model), ref, samples, pairs, precompute, tmp
            )
            return run_trl(trainer), trainer.bench_precompute_seconds

    else:
        raise ValueError(f"unknown side {side!r}")
    return once


def throughput(
    sides: list[str],
    spec: dict,
    data: dict,
    scale: str,
    steps: int,
    warmup_steps: int,
    repeats: int,
    seed: int = 0,
) -> dict:
    """pairs/s of each side (``ours``, ``trl``, ``trl_precompute``) over ``steps``
    optimisation steps. Every side first runs ``warmup_steps`` steps; then ``repeats``
    rounds time one run of each side, the order rotating by round, so that a change
    in the machine's load reaches every side alike (this machine is shared)."""
    probe = syn.compose_cfg(scale)
    bs = int(probe.scale.train.batch_size)
    n_pairs = steps * bs
    mspec, cfg, samples, p, model = _setup(spec, data, scale, n_pairs, seed)
    warm = _subset(p, max(1, warmup_steps) * bs)
    out: dict = {
        "model": mspec.name,
        "n_params": syn.n_params(model),
        "pairs": n_pairs,
        "steps": steps,
        "batch_size": bs,
        "repeats": repeats,
        "reference_responses": len(syn.used_responses(samples, p)[2]),
        "reference_batch_size": int(cfg.scale.eval.batch_size),
        "sides": {
            side: {"train_seconds": [], "reference_seconds": [], "seconds_per_step": []}
            for side in sides
        },
    }
    if any(side != "ours" for side in sides):
        out["trl_optimizer"] = str(trl_args(cfg, mspec, False, "/tmp").optim.value)
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        runners = {side: _runner(side, cfg, mspec, model, samples, tmp) for side in sides}
        for side in sides:
            runners[side](warm)
        for round_ in range(repeats):
            k = round_ % len(sides)
            for side in sides[k:] + sides[:k]:
                run, ref_seconds = runners[side](p)
                if run.steps != steps:
                    raise RuntimeError(f"{side}: {run.steps} steps taken, {steps} expected")
                out["sides"][side]["train_seconds"].append(run.seconds)
                out["sides"][side]["reference_seconds"].append(ref_seconds)
                out["sides"][side]["seconds_per_step"].append(run.seconds_per_step())
    for r in out["sides"].values():
        total = [a + b for a, b in zip(r["train_seconds"], r["reference_seconds"], strict=True)]
        r["train_seconds_median"] = median(r["train_seconds"])
        r["reference_seconds_median"] = median(r["reference_seconds"])
        r["pairs_per_s"] = n_pairs / r["train_seconds_median"]
        r["pairs_per_s_with_reference"] = n_pairs / median(total)
        per_step = [x for x in r["seconds_per_step"] if x is not None]
        r["steady_pairs_per_s"] = bs / median(per_step) if per_step else None
    return out


def loss_equality(spec: dict, data: dict, scale: str, steps: int, seed: int = 0) -> dict:
    """The loss of the first ``steps`` steps, ours and TRL's (both reference modes),
    from the same weights on the same batches. The reference is a second random model
    (with the policy as its own reference every first-step loss would be log 2 whatever
    the log-probs), so the first step compares the log-probs themselves and the later
    ones the gradient, clipping, optimizer and schedule."""
    probe = syn.compose_cfg(scale)
    n_pairs = steps * int(probe.scale.train.batch_size)
    mspec, cfg, samples, p, model = _setup(spec, data, scale, n_pairs, seed)
    OmegaConf.update(cfg, "scale.train.log_every", 1)
    ref_model = syn.build_model(mspec, seed + 1).eval()
    table, _ = reference_table(ref_model, samples, p, int(cfg.scale.eval.batch_size))
    ours_losses = run_ours(cfg, syn.clone(model), samples, p, table).losses[:steps]
    out: dict = {
        "model": mspec.name,
        "steps": steps,
        "beta": float(cfg.loss.beta),
        "ours": ours_losses,
    }
    if trl_version() is None:
        out["trl"] = None
        return out
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        for mode, precompute in (("trl", False), ("trl_precompute", True)):
            trainer = make_trainer(
                cfg, mspec, syn.clone(model), syn.clone(ref_model).eval(), samples, p,
                precompute, tmp, record_losses=True,
            )  # fmt: skip
            theirs = run_trl(trainer).losses[:steps]
            diffs = [abs(a - b) for a, b in zip(ours_losses, theirs, strict=True)]
            out[mode] = theirs
            out[f"{mode}_first_step_abs_diff"] = diffs[0]
            out[f"{mode}_max_abs_diff"] = max(diffs)
    out["max_abs_diff"] = max(out["trl_max_abs_diff"], out["trl_precompute_max_abs_diff"])
    return out


def run_seconds(
    spec: dict, data: dict, scale: str, n_pairs: int, repeats: int, seed: int = 0
) -> dict:
    """Seconds of one whole training run (``train_pairs``) on ``n_pairs`` pairs."""
    mspec, cfg, samples, p, model = _setup(spec, data, scale, n_pairs, seed)
    ref_model = syn.clone(model).eval()
    table, ref_seconds = reference_table(ref_model, samples, p, int(cfg.scale.eval.batch_size))
    seconds = []
    for _ in range(repeats):
        run = run_ours(cfg, syn.clone(model), samples, p, table)
        seconds.append(run.seconds)
        steps = run.steps
    return {
        "model": mspec.name,
        "pairs": n_pairs,
        "steps": steps,
        "repeats": repeats,
        "seconds": seconds,
        "seconds_median": median(seconds),
        "reference_seconds": ref_seconds,
    }


def profile(
    side: str, spec: dict, data: dict, scale: str, steps: int, path: str, seed: int = 0
) -> dict:
    """One run of ``steps`` steps of ``ours`` or ``trl_precompute`` under pyinstrument
    (installed in .venv-bench), after a one-step warm-up; the call tree goes to ``path``."""
    from pyinstrument import Profiler

    probe = syn.compose_cfg(scale)
    bs = int(probe.scale.train.batch_size)
    mspec, cfg, samples, p, model = _setup(spec, data, scale, steps * bs, seed)
    warm = _subset(p, bs)
    profiler = Profiler(interval=0.002)
    if side == "ours":
        table, _ = reference_table(
            syn.clone(model).eval(), samples, p, int(cfg.scale.eval.batch_size)
        )
        run_ours(cfg, syn.clone(model), samples, warm, table)
        profiler.start()
        seconds = run_ours(cfg, syn.clone(model), samples, p, table).seconds
        profiler.stop()
    elif side == "trl_precompute":
        with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
            run_trl(make_trainer(cfg, mspec, syn.clone(model), None, samples, warm, True, tmp))
            trainer = make_trainer(cfg, mspec, syn.clone(model), None, samples, p, True, tmp)
            profiler.start()
            seconds = run_trl(trainer).seconds
            profiler.stop()
    else:
        raise ValueError(f"cannot profile {side!r}")
    text = profiler.output_text(unicode=False, color=False)
    with open(path, "w") as f:
        f.write(text)
    return {"side": side, "model": mspec.name, "steps": steps, "seconds": seconds, "path": path}
