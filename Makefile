# Two commands set everything up on a machine with only Python 3.11:
#   make run   - install into .venv, then serve the function on :8080 (dry-run agent)
#   make test  - install into .venv, lint, then run the test suite
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8080

.PHONY: install run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/khook serve --port $(PORT) --hooks config/samples/hooks

lint: $(STAMP)
	$(BIN)/ruff check functions tests
	$(BIN)/ruff format --check functions tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

# Measurements, never pass/fail: a table on stdout, the numbers in .khook/bench.json (wrk if
# installed). `make bench BENCH_ARGS=--quick` checks the harness in about a minute.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .khook .mypy_cache .ruff_cache .pytest_cache
