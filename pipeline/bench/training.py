"""DPO training measured two ways on the same model, pairs, batch and lengths:

- ours: the pipeline's real loop, ``pipeline.stages.train.train_pairs``, with the
  reference log-probs computed beforehand by ``pipeline.stages.reference.batched_logps``
  (the reference stage's function), timed apart;
- TRL's ``DPOTrainer`` (imported here only, lazily: TRL is no pipeline dependency),
  configured to match: same batch, no gradient accumulation, AdamW at the run's lr,
  weight decay and warmup, the same gradient clipping, fp32 on the CPU, dropout off, no
  gradient checkpointing, no evaluation, logging, saving or progress bars, the pairs in
  the same order, with its reference log-probs precomputed or computed at every step.

Everything returns plain JSON-able dicts (the parent process writes the report).
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.bench import synthetic as syn
from pipeline.bench.synthetic import PAD, DataSpec, ModelSpec


class LossRecorder:
    """A ``train_pairs`` sink that keeps each logged step's loss and when it was logged
    (``train_pairs`` logs once the step's optimizer update is done)."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}
        self.times: dict[int, float] = {}

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.times[step] = time.perf_counter()
        self.losses[step] = float(metrics["train/loss"])


@dataclass
class Timed:
    """One timed training call."""

    seconds: float  # the whole call
    steps: int
    losses: list[float]  # TRL: every step's; ours: the logged steps', in order
    step_times: dict[int, float]  # step -> when its update was done

    def seconds_per_step(self) -> float | None:
        """Steady state: from the end of the first timed step to the end of the last,
        per step (start-up, the first step and the end of the call left out)."""
        if len(self.step_times) < 2:
            return None
        first, last = min(self.step_times), max(self.step_times)
        return (self.step_times[last] - self.step_times[first]) / (last - first)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# ---- ours ---------------------------------------------------------------------------


def reference_table(
    ref_model: torch.nn.Module, samples: dict, p: dict, batch_size: int
) -> tuple[torch.Tensor, float]:
    """(n_prompts, n_samples) reference log-probs (NaN where no pair needs one) from
    the reference stage's function, and the seconds that pass took."""
    from pipeline.stages.reference import batched_logps

    prompts, responses, cells = syn.used_responses(samples, p)
    ref_model.eval()
    start = time.perf_counter()
    logps = batched_logps(ref_model, prompts, responses, PAD, batch_size)
    seconds = time.perf_counter() - start
    table = np.full((len(samples["prompts"]), len(samples["responses"][0])), np.nan)
    rows, cols = zip(*cells, strict=True)
    table[list(rows), list(cols)] = logps
    return torch.from_numpy(table).float(), seconds


def run_ours(
    cfg: DictConfig, policy: torch.nn.Module, samples: dict, p: dict, reference: torch.Tensor
) -> Timed:
    """One call of the real loop."""
    from pipeline.seeding import set_seed
    from pipeline.stages import train

    gen = set_seed(int(cfg.seed))
    offsets = train.pair_offsets(cfg, p)
    sink = LossRecorder()
    policy.train()
    start = time.perf_counter()
    steps = train.train_pairs(cfg, policy, samples, p, reference, offsets, PAD, gen, [sink], None)
    seconds = time.perf_counter() - start
    return Timed(seconds, steps, [sink.losses[k] for k in sorted(sink.losses)], sink.times)


def _subset(p: dict, n: int) -> dict:
    return {k: v[:n] for k, v in p.items()}


# ---- TRL ----------------------------------------------------------------------------


def trl_version() -> str | None:
    """TRL's version, or None where it is not installed (the pipeline's own venv)."""
    try:
        import trl
    except ImportError:
        return None
    return trl.__version__


@functools.cache
def _trainer_class(record_losses: bool):
    """DPOTrainer, changed only where our data differs from a text dataset: the pairs
    are token ids already, so its tokenisation step is skipped (the collator, loss and
    training loop are TRL's own). Its reference pre-pass is timed."""
    from trl import DPOTrainer

    class BenchDPOTrainer(DPOTrainer):
        bench_precompute_seconds = 0.0
        bench_losses: list[float]

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def _precompute_ref_logps(self, dataset, name, batch_size):
            start = time.perf_counter()
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            self.bench_precompute_seconds += time.perf_counter() - start
            return out

        if record_losses:

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                self.bench_losses.append(float(loss.detach()))
                return loss

    return BenchDPOTrainer


@functools.cache
def _clock_class():
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """When each step's optimizer update was done (as our sink records it)."""

        def __init__(self) -> None:
            self.times: dict[int, float] = {}

        def on_step_end(self, args, state, control, **kwargs):
            self.times[state.global_step - 1] = time.perf_counter()

    return StepClock


def id_tokenizer(vocab_size: int):
    """A tokenizer whose only job is to name the pad token (the data is token ids)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": PAD, **{f"t{i}": i for i in range(1, vocab_size)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    special = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special, eos_token=special, pad_token=special
    )


def trl_args(cfg: DictConfig, spec: ModelSpec, precompute: bool, out_dir: str):
    """DPOConfig mirroring the run config ``cfg`` (what ``train_pairs`` reads)."""
    from trl import DPOConfig

    tc = cfg.scale.train
    if tc.optimizer != "adamw":
        raise ValueError(f"the comparison uses AdamW; the run config says {tc.optimizer}")
    return DPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=int(tc.batch_size),
        gradient_accumulation_steps=1,
        num_train_epochs=int(tc.epochs),
        learning_rate=float(tc.lr),
        weight_decay=0.01,  # torch.optim.AdamW's default, which train_pairs gets
        lr_scheduler_type="constant_with_warmup",  # train_pairs: the same schedule
        warmup_steps=int(tc.warmup_steps),
        max_grad_norm=float(tc.max_grad_norm),
        beta=float(cfg.loss.beta),
        loss_type=["sigmoid"],  # DPO
        max_length=spec.n_positions,
        precompute_ref_log_probs=precompute,
        precompute_ref_batch_size=int(cfg.scale.eval.batch_size),  # as our reference stage
        gradient_checkpointing=False,  # TRL's default is on: slower, only saves memory
        bf16=False,
        fp16=False,
        use_cpu=True,
        disable_dropout=True,
        padding_free=False,  # unavailable in this TRL (it warns and pads)
        train_sampling_strategy="sequential",  # the pairs in the order train_pairs takes them
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=int(cfg.seed),
    )


def make_trainer(
    cfg: DictConfig,
    spec: ModelSpec,
    policy: torch.nn.Module,
    ref_model: torch.nn.Module | None,
    samples: dict,
    p: dict,
    precompute: bool,
    out_dir: str,
    record_losses: bool = False,
):
    from datasets import Dataset

    prompts, chosen, rejected = syn.pair_lists(samples, p)
    data = Dataset.from_dict(
        {"prompt_ids": prompts, "chosen_ids": chosen, "rejected_ids": rejected}
    )
    trainer = _trainer_class(record_losses)(
        model=policy,
        ref_model=ref_model,
        args=trl_args(cfg, spec, precompute, out_dir),
        train_dataset=data,
        processing_class=id_tokenizer(spec.vocab_size),
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints the run's summary dict at the end
    trainer.bench_clock = _clock_class()()
    trainer.add_callback(trainer.bench_clock)
    trainer.bench_losses = []
    return trainer


def run_trl(trainer) -> Timed:
    start = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - start
    return Timed(seconds, int(out.global_step), trainer.bench_losses, trainer.bench_clock.times)


# ---- the measured pieces -------------------------------------------------------------


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


def reference_pass(spec: dict, data: dict, scale: str, seed: int = 0) -> dict:
    """The reference stage's pass over a whole sample set (every response once)."""
    mspec, dspec = ModelSpec(**spec), DataSpec(**data)
    cfg = syn.compose_cfg(scale)
    samples = syn.make_samples(mspec, dspec, seed)
    model = syn.build_model(mspec, seed).eval()
    from pipeline.stages.reference import batched_logps

    prompts = [
        pr for pr, rs in zip(samples["prompts"], samples["responses"], strict=True) for _ in rs
    ]
    responses = [r for rs in samples["responses"] for r in rs]
    start = time.perf_counter()
    batched_logps(model, prompts, responses, PAD, int(cfg.scale.eval.batch_size))
    return {"responses": len(responses), "seconds": time.perf_counter() - start}


def sft_steps(spec: dict, scale: str, steps: int, seed: int = 0) -> dict:
    """A few steps of the SFT stage's loop (``sft.train_lm``) on random texts of the
    scale's SFT length: its memory, not its result."""
    from pipeline.stages.sft import train_lm

    mspec = ModelSpec(**spec)
    cfg = syn.compose_cfg(scale)
    sft_cfg = OmegaConf.merge(cfg.scale.sft, {"steps": steps, "warmup_steps": 0})
    rng = np.random.default_rng(seed)
    length = int(cfg.scale.sft.max_length)
    seqs = [rng.integers(1, mspec.vocab_size, length).tolist() for _ in range(1024)]
    model = syn.build_model(mspec, seed)
    start = time.perf_counter()
    train_lm(model, seqs, sft_cfg, PAD, torch.Generator().manual_seed(seed), "cpu")
    return {"steps": steps, "seconds": time.perf_counter() - start}


def evaluate_kl(spec: dict, data: dict, scale: str, seed: int = 0) -> dict:
    """The evaluation stage's KL pass (policy and SFT model over held-out samples)."""
    from pipeline.stages.evaluate import kl_to_reference

    mspec, dspec = ModelSpec(**spec), DataSpec(**data)
    cfg = syn.compose_cfg(scale)
    samples = syn.make_samples(mspec, dspec, seed)
    prompts = list(samples["prompts"])
    responses = [rs[0] for rs in samples["responses"]]
    policy, reference = syn.build_model(mspec, seed).eval(), syn.build_model(mspec, seed + 1).eval()
    start = time.perf_counter()
    kl_to_reference(policy, reference, prompts, responses, PAD, int(cfg.scale.eval.batch_size))
    return {"responses": len(responses), "seconds": time.perf_counter() - start}


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
