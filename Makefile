# Everything bootstraps .venv from a bare python3; the stamp reinstalls when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q integration
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/mde-enrich demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy integration

test: $(STAMP) lint
	$(BIN)/python -m pytest

# An installed package has its bytecode; an editable one under PYTHONDONTWRITEBYTECODE would
# be compiled from source in every process, so write it before measuring start-up.
bench: $(STAMP)
	$(BIN)/python -m compileall -q integration
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
