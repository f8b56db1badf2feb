# Everything bootstraps .venv from a bare python3; the stamp reinstalls when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean soar-package

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
	$(BIN)/mypy --strict integration

# Splunk SOAR's SDK needs a Python 3.13: $PY313, python3.13 on the PATH, pyenv's versions or
# `uv python find` (integration/platforms/python313.py, which the tests use too).
PY313 ?= $(shell $(PYTHON) integration/platforms/python313.py 2>/dev/null)
export PY313

test: $(STAMP) lint
	@test -n "$(PY313)" || $(PYTHON) integration/platforms/python313.py >/dev/null
	$(BIN)/python -m pytest

# An installed package has its bytecode; an editable one under PYTHONDONTWRITEBYTECODE would
# be compiled from source in every process, so write it before measuring start-up.
bench: $(STAMP)
	$(BIN)/python -m compileall -q integration
	$(BIN)/python -m bench

# The Splunk SOAR app package: needs Python 3.13 (splunk-soar-sdk 7) and PyPI. Not run in CI.
SOAR := .venv-soar/bin
$(SOAR)/python:
	@test -n "$(PY313)" || $(PYTHON) integration/platforms/python313.py >/dev/null
	$(PY313) -m venv .venv-soar
	$(SOAR)/pip install -q 'splunk-soar-sdk>=7,<8' uv 'setuptools>=77' wheel
	$(SOAR)/pip install -q --no-build-isolation -e .

soar-package: $(STAMP) $(SOAR)/python
	rm -rf build/dist build/soar-app
	$(SOAR)/pip wheel -q --no-deps --no-build-isolation -w build/dist .
	$(BIN)/python -m integration.platforms.splunk_soar generate build/soar-app --wheel $$(ls build/dist/mde_enrich-*.whl)
	cd build/soar-app && UV_PYTHON=$(PY313) UV_PYTHON_DOWNLOADS=never ../../$(SOAR)/uv lock
	$(SOAR)/python -m integration.platforms.splunk_soar package build/soar-app build/mde-enrich-soar.tgz

clean:
	rm -rf $(VENV) .venv-soar .pytest_cache .ruff_cache .hypothesis build
