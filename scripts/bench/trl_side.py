"""The TRL side of the DPO comparison: TRL's ``DPOTrainer`` (imported here only, lazily:
TRL is no pipeline dependency), configured to match our loop: same batch, no gradient
accumulation, AdamW at the run's lr, weight decay and warmup, the same gradient clipping,
fp32 on the CPU, dropout off, no gradient checkpointing, no evaluation, logging, saving
or progress bars, the pairs in the same order, with its reference log-probs precomputed
or computed at every step.
"""

from __future__ import annotations

import functools
import time

import torch
from omegaconf import DictConfig

from scripts.bench import synthetic as syn
from scripts.bench.ours import Timed
from scripts.bench.synthetic import PAD, ModelSpec


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


def trl_args(cfg: DictConfig, spec: ModelSpec, precompute: bool, out_dir: str, bf16: bool = False):
    """DPOConfig mirroring the run config ``cfg`` (what ``train_pairs`` reads); ``bf16``:
    mixed precision (on the CPU, accelerate's bfloat16 autocast), as ours under bf16."""
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
        bf16=bf16,
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
    peft_config=None,
    bf16: bool = False,
):
    """A ``DPOTrainer`` on ``p``; with ``peft_config`` (and no ``ref_model``) TRL puts the
    adapters on ``policy`` itself, and its reference is the policy with them disabled."""
    from datasets import Dataset

    prompts, chosen, rejected = syn.pair_lists(samples, p)
    data = Dataset.from_dict(
        {"prompt_ids": prompts, "chosen_ids": chosen, "rejected_ids": rejected}
    )
    trainer = _trainer_class(record_losses)(
        model=policy,
        ref_model=ref_model,
        args=trl_args(cfg, spec, precompute, out_dir, bf16),
        train_dataset=data,
        processing_class=id_tokenizer(spec.vocab_size),
        peft_config=peft_config,
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
