# dicelib workspace. `make help` lists the targets.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

install:  ## install dicelib and everything the pipeline needs (torch pinned to the CPU-capable 2.13.0)
	$(PIP) install -q -e .

install-dev:  ## install dicelib with the test tools (Ray included: the sweep tests start a local cluster)
	$(PIP) install -q -e ".[dev]"

repro: install  ## set up and run the whole DVC pipeline on the embedded defaults (up to date on a fresh clone)
	$(PYTHON) -m dvc repro
	$(PYTHON) -m dvc status

repro-all: install  ## recompute every stage from scratch, ignoring the committed outputs (about 35 min on 2 cores)
	$(PYTHON) -m dvc repro -f
	$(PYTHON) -m dvc status

test: install-dev  ## set up and run the tests, notebooks included (teaching sizes; outputs go to a temp dir, removed after)
	reports=$$(mktemp -d -t dicelib-reports-XXXXXX) && \
	DICELIB_REPORTS=$$reports $(PYTHON) -m pytest tests notebooks --nbval-lax -p no:cacheprovider; \
	status=$$?; rm -rf $$reports; exit $$status

test-isa: install-dev  ## rerun the numerically sensitive tests on torch's portable CPU kernels (as on a CPU without AVX2/AVX-512)
	reports=$$(mktemp -d -t dicelib-reports-XXXXXX) && \
	ATEN_CPU_CAPABILITY=default DICELIB_REPORTS=$$reports $(PYTHON) -m pytest tests/core tests/adapters tests/image -p no:cacheprovider; \
	status=$$?; rm -rf $$reports; exit $$status

lab: install  ## open the notebooks in JupyterLab (as any user, root included: --allow-root is added for uid 0)
	$(PYTHON) -m dicelib.lab

bench: install  ## time inversion + editing of the adapters (medians after a warm-up) -> benchmarks/results/bench_adapters_<machine>_<date>.json
	$(PYTHON) benchmarks/bench_adapters.py $$($(PYTHON) -c "import torch; print('' if torch.cuda.is_available() else '--small')")

exp:  ## the DVC experiments in 120 columns: name, params that differ, headline metrics (docs/experiments.md)
	$(PYTHON) -m dicelib.exp_table

plots-template:  ## rebuild .dvc/plots/offline.html (the page `dvc plots show` writes: vega, vega-lite, vega-embed inline)
	$(PYTHON) .dvc/plots/make_template.py

clean:  ## remove caches and failed runs' notebooks (keeps the committed pipeline outputs)
	rm -rf .pytest_cache .hypothesis **/__pycache__ *.egg-info reports/notebooks/failed reports/.staging

.PHONY: help install install-dev repro repro-all test test-isa lab bench exp plots-template clean
