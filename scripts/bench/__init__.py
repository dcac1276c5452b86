"""``make bench``: the pipeline's speed, measured, in ``results/bench/report.md`` and
``report.json`` (every figure from one invocation: medians of repeats after a warm-up,
ratios from the same run).

    python -m scripts.bench                       # full, into results/bench/ (~15 min, 2 cores)
    python -m scripts.bench --scale micro --out DIR --inline   # seconds: what the tests run
    python -m scripts.bench --only trl,sampling   # some sections only
    python -m scripts.bench --ledger PATH         # another cache's ledger.jsonl ('' for none)
    python -m scripts.bench --sizes embedded      # the TRL comparison at one size only
    python -m scripts.bench --profile             # also pyinstrument call trees, OUT/profile-*.txt
    python -m scripts.bench --only smollm2 --merge   # add the SmolLM2 section to OUT's report
    make bench ARGS="--threads 1 --profile"        # make passes ARGS on

Sections (``sections.py``; each measured piece runs in a child process of its own, so its
peak memory is its own, unless ``--inline``):

- trl: ours (``pipeline.stages.train.train_pairs``, the pipeline's real loop) against TRL's
  ``DPOTrainer`` on the same random-weight GPT-2, pairs, batch and lengths, fp32 on the
  CPU, at the embedded size and at ~20M (30M with the tied output layer) parameters:
  first the same loss from the same weights, then pairs/s with TRL's reference
  log-probs precomputed and not (``training.py``; our side in ``ours.py``, TRL's in
  ``trl_side.py``). TRL is no pipeline dependency: it is imported lazily, and without it
  only our side is measured. ``make bench`` installs it into ``.venv-bench`` (the
  pipeline's venv plus trl and the profilers).
- smollm2 (opt-in, ``--only smollm2``): the same comparison on the real model of
  ``experiment=sentiment_smollm2`` (SmolLM2-135M-Instruct from the cache, dequantized from
  Q4_1, ``--cache-dir``) with its LoRA adapters, bf16 autocast on a bf16 CPU, TRL given the
  same ``peft_config``; steady pairs/s against the issue's targets, the reference pass's
  and ``models.sample``'s tokens/s (bf16 and fp32) (``smollm2.py``, ``report_smollm2.py``).
- sweep: executions per stage for the sentiment grid from ``pipeline.orchestration.graph.stage_keys``,
  against the minimum and a naive sweep, and the ledger's counts and seconds
  (``sweep.py``).
- sampling: ``models.sample`` (batched) against one ``generate`` per response: real
  tokens/s and the share of padded positions (``sampling.py``).
- runs: seconds per training run at 5,000 / 7,500 / 10,000 pairs and a line through them.
- optimizer: the update alone, RMSprop eager and compiled (``scale.train.compile``) and
  fused AdamW, on the 20M model's parameters (``optimizer.py``).
- memory: peak RSS of each piece, stage by stage (``child.py``, ``stage_pieces.py``).
- gpu: whether a GPU is here; a ``gpu.json`` from the separate GPU script is shown,
  labelled as measured elsewhere.

Threads: 2 (the project's CPU) unless ``--threads``; the micro scale uses 1. The load
average before and after every piece is in report.json: another busy process on the
same cores makes 2-thread timings several times slower, so run it on a quiet machine.
"""
