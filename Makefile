# Set-up and checks from a fresh clone: only Python 3 (>= 3.10) and the package registries.
#   make demo   create .venv, install semcom, run the main job
#   make test   create .venv, install semcom with dev tools, run every check and the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= all,dev

.PHONY: demo test lint typecheck imports unit golden clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever pyproject.toml changes.
$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

demo: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/semcom bench codec

test: lint typecheck imports unit

lint: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/mypy

imports: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/lint-imports

unit: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/pytest

# Rewrite the golden wire fixtures after a deliberate protocol change.
golden: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/python -m tests.shared.golden --write

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
