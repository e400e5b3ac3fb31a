# Set-up is part of every target: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: setup demo test lint clean

$(BIN)/remediator: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/remediator

demo: setup  ## the controller against the built-in emulator: detect, remediate, recover
	$(BIN)/remediator demo

test: setup  ## the whole test suite
	$(BIN)/python -m pytest

lint: setup  ## ruff, mypy --strict and the import layers
	$(BIN)/ruff check controller tests benchmarks
	$(BIN)/ruff format --check controller tests benchmarks
	$(BIN)/mypy --strict controller
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) build *.egg-info
