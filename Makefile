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

.PHONY: demo test lint typecheck check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/neurodfc simulate models/fig1d.toml --out demo_out/fig1d.nc --plot demo_out/fig1d.png

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy neurodfc

check: test lint typecheck

clean:
	rm -rf demo_out .pytest_cache .mypy_cache .ruff_cache
