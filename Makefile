# The two commands a newcomer needs: `make assets` and `make test`. Both build .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: assets plan test check lint format types bench bench-quick reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

assets: $(STAMP)
	$(BIN)/pipeline run

plan: $(STAMP)
	$(BIN)/pipeline plan

test: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

# The reliability suites in full mode (crash chaos, fault matrix, hostile server, fuzzing, ...);
# `make test` runs a fast slice of each.
reliability: $(STAMP)
	PIPELINE_FULL=1 $(BIN)/pytest -q tests/reliability

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .pipeline .pytest_cache .mypy_cache .ruff_cache
