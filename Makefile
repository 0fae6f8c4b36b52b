# Set-up and checks from a fresh clone: only Python 3 (>= 3.10) and the package registries.
#   make demo   create .venv, install semcom, run `semcom demo` (cloud + edge + WebRTC + summary)
#   make test   create .venv, install semcom with dev tools, run every check and the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= all,dev

.PHONY: demo test lint typecheck imports unit chromium mosquitto golden clean deploy-manifests deploy-images

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever pyproject.toml changes.
$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# The demo's models. Beside a checkout with the team's test-only models (../shared/data, never
# committed), it imports them into the models directory (`semcom models import`, hash-checked)
# and runs on them: the YOLO11n int8 ONNX and the ImageNet MobileNetV2, on a real traffic clip.
# Otherwise it pulls YOLO11n and MobileNetV2 (`--pull-models`, once); offline it runs untrained
# models and says so. Override, e.g.: make demo DEMO_ARGS="--source clip.mp4 --detector m.onnx"
SHARED_DATA   ?= ../shared/data
TEAM_DETECTOR := $(wildcard $(SHARED_DATA)/weights/yolo11n_int8_coco_320.onnx)
TEAM_ENCODER  := $(wildcard $(SHARED_DATA)/weights/mobilenet_v2_imagenet/mobilenetv2_100_coral_dequant.safetensors)
TEAM_CLIP     := $(wildcard $(SHARED_DATA)/videos/cars_kraten.mp4)
ifneq ($(and $(TEAM_DETECTOR),$(TEAM_ENCODER)),)
DEMO_ARGS  ?= --detector yolo11n-int8-320 --encoder mobilenetv2_100_coral $(if $(TEAM_CLIP),--source $(TEAM_CLIP) --seconds 20)
DEMO_SETUP := $(BIN)/semcom models import $(TEAM_DETECTOR) --as yolo11n-int8-320 && \
              $(BIN)/semcom models import $(TEAM_ENCODER) --as mobilenetv2_100_coral
else
DEMO_ARGS  ?= --pull-models
DEMO_SETUP := true
endif

demo: $(VENV)/.installed-$(EXTRAS)
	$(DEMO_SETUP)
	$(BIN)/semcom demo $(DEMO_ARGS)

test: lint typecheck imports deploy-manifests deploy-images unit

lint: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/mypy

imports: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/lint-imports

unit: $(VENV)/.installed-$(EXTRAS) chromium mosquitto
	$(BIN)/pytest

# The deployment manifests, offline: every kustomize overlay under deploy/k8s/overlays rendered
# by kubectl and validated strictly (unknown fields fail; a kind without a schema fails) against
# the Kubernetes schemas bundled in kubernetes-validate, for each of K8S_VERSIONS; and
# deploy/compose.yaml against the Compose Specification schema vendored in check-jsonschema.
# Without kubectl (not a Debian 12 package) it says so and checks only the compose file;
# tests/deploy runs the same checks and more (and skips the Kubernetes ones likewise).
K8S_VERSIONS ?= 1.30.0 1.34.0
K8S_OVERLAYS := $(sort $(dir $(wildcard deploy/k8s/overlays/*/kustomization.yaml)))
deploy-manifests: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	@if ! command -v kubectl >/dev/null; then \
	  echo "make: kubectl missing: the kustomize overlays in deploy/k8s are not rendered or validated"; \
	else \
	  out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && \
	  for dir in $(K8S_OVERLAYS); do \
	    kubectl kustomize $$dir > $$out/all.yaml || exit 1; \
	    $(BIN)/kubernetes-validate --strict --quiet $(addprefix -k ,$(K8S_VERSIONS)) $$out/all.yaml \
	      > $$out/log 2>&1; rc=$$?; \
	    if [ $$rc != 0 ] || [ -s $$out/log ]; then cat $$out/log; echo "make: $$dir is not valid"; exit 1; fi; \
	    echo "$$dir: $$(grep -c '^kind:' $$out/all.yaml) resources valid for Kubernetes $(K8S_VERSIONS)"; \
	  done; \
	fi

# The container images (deploy/edge/Dockerfile, deploy/edge/Dockerfile.jetson,
# deploy/cloud/Dockerfile), without Docker: hadolint, shellcheck, the Jetson script's --check,
# and the CPU images' install scripts run for real into temporary prefixes, verified and
# removed (deploy/check-images.sh). PyTorch's CPU index, the images' default, is out of CI's
# reach: here torch comes from pip's own index (DEPLOY_TORCH_INDEX_URL empty), the same
# versions in PyPI's CUDA build, which runs on the CPU too.
DEPLOY_TORCH_INDEX_URL ?=
deploy-images: $(VENV)/.installed-$(EXTRAS)
	PATH="$$PATH:$(abspath $(BIN))" SEMCOM_TORCH_INDEX_URL="$(DEPLOY_TORCH_INDEX_URL)" \
	  deploy/check-images.sh

# The dashboard's browser tests (tests/dashboard) drive Debian's Chromium through Playwright;
# no browser is ever downloaded (never `playwright install`). As root (CI), install the
# chromium package when it is missing (apt-get update only if the install fails without it);
# otherwise say so in one line and go on: those tests then skip, saying why. (The tests look
# for /usr/bin/chromium only.)
CHROMIUM ?= /usr/bin/chromium
APT_GET  := DEBIAN_FRONTEND=noninteractive apt-get -y -q
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "make: $(CHROMIUM) missing (needs root and apt-get to install Debian's chromium): the browser tests in tests/dashboard will skip"; \
	else \
	  echo "make: installing Debian's chromium for the browser tests (tests/dashboard)"; \
	  $(APT_GET) install --no-install-recommends chromium || \
	  { $(APT_GET) update && $(APT_GET) install --no-install-recommends chromium; }; \
	fi

# The alerts' MQTT tests (tests/alerts) start Debian's Mosquitto broker on 127.0.0.1: installed
# the same way (as root, when missing); otherwise one line, and those tests skip saying why.
MOSQUITTO ?= /usr/sbin/mosquitto
mosquitto:
	@if [ -x $(MOSQUITTO) ]; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "make: $(MOSQUITTO) missing (needs root and apt-get to install Debian's mosquitto): the MQTT tests in tests/alerts will skip"; \
	else \
	  echo "make: installing Debian's mosquitto for the MQTT tests (tests/alerts)"; \
	  $(APT_GET) install --no-install-recommends mosquitto || \
	  { $(APT_GET) update && $(APT_GET) install --no-install-recommends mosquitto; }; \
	fi

# Rewrite the golden wire fixtures after a deliberate protocol change.
golden: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/python -m tests.shared.golden --write

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
