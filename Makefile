# The two set-up commands of the README: `make demo` (main job) and `make test` (test suite).
# Each creates .venv if it is missing. torch is pinned to 2.13.0 so that pip stays on the
# CPU build (a plain `torch` requirement may pull a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.neurodfc-installed
TORCH ?= torch==2.13.0
PYTEST_ARGS ?= -n 2
# the shared data folder beside the checkout, when present (tests and CI never download)
ifneq ($(wildcard ../shared/data),)
export NEURODFC_DATA ?= $(abspath ../shared/data)
endif

.PHONY: demo test lint typecheck docs check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" -e '.[dev,docs]'
	touch $(STAMP)

# The main job: the Fig. 1D dynamics, then DFC trained on the embedded teacher-student task
# for a few epochs with the analysis metrics logged, and its report (about a minute on 2 cores).
demo: $(STAMP)
	$(BIN)/neurodfc simulate models/fig1d.toml --out demo_out/fig1d.nc --plot demo_out/fig1d.png
	rm -rf demo_out/dfc_run
	$(BIN)/neurodfc train models/fig3_dfc.toml --epochs 3 --set analysis.log_interval=10 \
		--out demo_out/dfc_run --quiet
	$(BIN)/neurodfc report demo_out/dfc_run

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy neurodfc

# The documentation site (mkdocs.yml): site/index.html; a warning (broken link or anchor,
# missing page, bad docstring) fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

check: test lint typecheck docs

clean:
	rm -rf demo_out site .pytest_cache .mypy_cache .ruff_cache
