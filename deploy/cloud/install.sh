#!/usr/bin/env bash
# Install the semcom cloud service (semcom[cloud], CPU PyTorch) into a new venv, then verify it.
# The RUN steps of deploy/cloud/Dockerfile are this script; `make deploy-images` runs it for
# real.
#
#   deploy/cloud/install.sh --prefix /opt/semcom/venv [--source DIR] [--no-verify | --verify-only]
#       a venv at the prefix (absent or empty) with semcom[cloud] from the source tree
#       (default: the checkout this script is in), then the checks below (--verify-only:
#       only the checks, on an existing prefix).
#   deploy/cloud/install.sh --os-deps [--user semcom] [--clean-apt]
#       as root: the OS packages the cloud needs at run time (none: its wheels bundle their
#       libraries) and, with --user, the service user and its folders (/var/lib/semcom,
#       /models, /etc/semcom). --clean-apt drops apt's lists afterwards (image builds only).
#
# PyTorch (the query encoders and the crop decoder): SEMCOM_TORCH_SPEC (default
# "torch==2.14.1 torchvision==0.29.1") from SEMCOM_TORCH_INDEX_URL (default PyTorch's CPU
# index, https://download.pytorch.org/whl/cpu); an empty SEMCOM_TORCH_INDEX_URL means pip's
# own index (PyPI: the CUDA build). Other pip arguments: SEMCOM_PIP_ARGS.
#
# Verification: `semcom --version`, `pip check`, imports of the cloud's modules and libraries
# (and that ultralytics is NOT installed: the cloud never needs the detector stack),
# torchvision's compiled operators (nms), the configuration deploy/cloud.example.yaml (through
# `semcom cloud show-config` where that command exists, else cloud.config.load_config, which
# `semcom cloud serve` calls first), and a real `semcom cloud serve` on 127.0.0.1 (SQLite in a
# scratch folder) until deploy/healthcheck.py gets 200 from /healthz, then SIGTERM, which
# must end it within 30 s with exit status 0 or 143 (uvicorn's graceful shutdown re-raises it).
set -euo pipefail

SEMCOM_PROG=deploy/cloud/install.sh
# shellcheck source=SCRIPTDIR/../lib/install-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/install-common.sh"

semcom_install_main "${BASH_SOURCE[0]}" cloud "" "$@"

[ "$verify" = 1 ] || exit 0
semcom_verify_common "$prefix"
semcom_log "verify: imports and torchvision operators"
HF_HUB_OFFLINE=1 "$prefix/bin/python" - <<'PY'
import importlib
import importlib.util

for name in (
    "cloud.app", "cloud.cli", "cloud.config", "cloud.catalog", "cloud.index", "cloud.dashboard",
    "cloud.decoder", "cloud.describe", "fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg",
    "faiss", "qdrant_client", "timm", "open_clip", "torchmetrics", "openai", "PIL", "jinja2",
):
    importlib.import_module(name)
assert importlib.util.find_spec("ultralytics") is None, "ultralytics is installed on the cloud"

import torch
import torchvision

boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
kept = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist()
assert kept == [0], kept
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: ok")
PY

example=$source/deploy/cloud.example.yaml
if "$prefix/bin/semcom" cloud show-config --help >/dev/null 2>&1; then
    "$prefix/bin/semcom" cloud show-config --config "$example" >/dev/null
    semcom_log "verify: semcom cloud show-config --config deploy/cloud.example.yaml: ok"
else
    "$prefix/bin/python" -c 'import sys; from pathlib import Path
from cloud.config import load_config
load_config(Path(sys.argv[1]))' "$example"
    semcom_log "verify: deploy/cloud.example.yaml loads (cloud.config.load_config): ok"
fi

# A real server: port 0 (the log line says which port), SQLite in the scratch folder.
semcom_log "verify: semcom cloud serve answers /healthz and stops on SIGTERM"
log=$SEMCOM_WORK/serve.log
: >"$log"
HF_HUB_OFFLINE=1 SEMCOM_MODELS_DIR="$SEMCOM_WORK/models" "$prefix/bin/semcom" cloud serve \
    --host 127.0.0.1 --port 0 --data-dir "$SEMCOM_WORK/data" >"$log" 2>&1 &
pid=$!
# Whatever stops this script also stops the server (and then removes the scratch folder).
# shellcheck disable=SC2064  # expand now: fixed values
trap "kill $pid 2>/dev/null || true; rm -rf '$SEMCOM_WORK'" EXIT
port=""
for _ in $(seq 1 120); do
    port=$(sed -n 's|^semcom cloud listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; semcom_die 1 "semcom cloud serve exited"; }
    sleep 0.5
done
[ -n "$port" ] || { kill "$pid"; cat "$log" >&2; semcom_die 1 "no listening line in 60 s"; }
healthy=0
for _ in $(seq 1 30); do
    if "$prefix/bin/python" "$source/deploy/healthcheck.py" \
        --url "http://127.0.0.1:$port/healthz" 2>/dev/null; then
        healthy=1
        break
    fi
    sleep 1
done
kill -TERM "$pid"
status=0
for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    cat "$log" >&2
    semcom_die 1 "semcom cloud serve was still running 30 s after SIGTERM"
fi
wait "$pid" || status=$?
[ "$healthy" = 1 ] || { cat "$log" >&2; semcom_die 1 "/healthz never answered 200"; }
# uvicorn shuts down gracefully, then raises the signal it caught again: 143 (128 + SIGTERM),
# which systemd counts as a clean stop (and docker shows as exit code 143).
case $status in
0 | 143) ;;
*) cat "$log" >&2 && semcom_die 1 "semcom cloud serve exited $status after SIGTERM" ;;
esac
semcom_log "verify: /healthz 200 on port $port; SIGTERM stopped the server (exit $status)"
semcom_log "semcom[cloud] in $prefix: verified"
