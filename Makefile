# Set-up and checks from a fresh clone: only Python 3 (>= 3.10) and the package registries.
#   make demo   create .venv, install semcom, run `semcom demo` (cloud + edge + WebRTC + summary)
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

# Models are never downloaded: the demo uses the team's ONNX detector when it lies beside the
# checkout, otherwise ultralytics' YOLO11n architecture with random weights (the summary says
# so), and a random-init ViT. Override, e.g.: make demo DEMO_ARGS="--source clip.mp4 --detector m.onnx"
DETECTOR  ?= $(firstword $(wildcard ../shared/data/weights/yolo11n_int8_coco_320.onnx) yolo11n.yaml)
DEMO_ARGS ?= --detector $(DETECTOR) --random-init-encoder

demo: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/semcom demo $(DEMO_ARGS)

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
