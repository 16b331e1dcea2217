# The index of what a developer can run. `make help` lists the targets.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
ACCOUNTS ?= 2000

.PHONY: help uv install demo test test-fast lint format bench notebooks reliability clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

uv:  ## install uv with pip if it is missing
	@command -v uv >/dev/null 2>&1 || test -x "$(HOME)/.local/bin/uv" || python3 -m pip install --user --quiet uv

install: uv  ## create .venv with the locked dependencies and the `portfolio` command
	$(UV) sync --frozen

demo: install  ## the main job on embedded defaults: generate, train, promote, score, report
	$(UV) run portfolio demo --accounts $(ACCOUNTS)

test: install  ## the whole test suite (unit, pipeline, integration with real servers, notebooks)
	$(UV) run pytest -m "not reliability"

test-fast: install  ## unit tests only
	$(UV) run pytest -m "not integration and not slow"

lint: install  ## ruff check and format check
	$(UV) run ruff check . && $(UV) run ruff format --check .

format: install  ## ruff fix and format
	$(UV) run ruff check --fix . && $(UV) run ruff format .

BENCHMARKS ?= generator load_sources features scoring allocation quality batch serving spark

bench: install  ## run every benchmark (BENCHMARKS="features scoring" for some); record figures in docs/benchmarks.md
	@for name in $(BENCHMARKS); do echo "== benchmarks.$$name"; $(UV) run python -m benchmarks.$$name || exit 1; done

notebooks: install  ## open JupyterLab on the notebooks
	$(UV) run jupyter lab notebooks/

reliability: install  ## long load and fault runs (-rP shows the figures each test measured)
	$(UV) run pytest -m reliability -rP

clean:  ## remove generated outputs (keeps the MLflow store)
	rm -rf out runs .pytest_cache .ruff_cache
