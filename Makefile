# Set-up is part of every target: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

AZURITE = .tools/node_modules/.bin/azurite-blob

.PHONY: setup tools demo test lint constraints clean

$(BIN)/remediator: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/remediator

# Azurite (Azure Storage's emulator, from npm) for the leader-election tests; skipped
# quietly where there is no npm, in which case those tests report themselves skipped.
$(AZURITE):
	@if command -v npm >/dev/null; then \
		mkdir -p .tools && cd .tools && npm install --silent --no-audit --no-fund azurite@3; \
	else echo "npm not found: leader-election tests will be skipped"; fi

tools: $(AZURITE)

demo: setup  ## the controller against the built-in emulator: detect, remediate, recover
	$(BIN)/remediator demo

test: setup tools  ## the whole test suite
	$(BIN)/python -m pytest

lint: setup  ## ruff, mypy --strict and the import layers
	$(BIN)/ruff check controller tests benchmarks
	$(BIN)/ruff format --check controller tests benchmarks
	$(BIN)/mypy --strict controller
	$(BIN)/lint-imports --no-cache

constraints: setup  ## constraints.txt from this venv: the versions the tests pass with
	$(BIN)/python scripts/freeze_constraints.py

clean:
	rm -rf $(VENV) .tools build *.egg-info
