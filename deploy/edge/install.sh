#!/usr/bin/env bash
# Install the semcom edge agent (semcom[edge], CPU PyTorch) into a new venv, then verify it.
# The RUN steps of deploy/edge/Dockerfile are this script; `make deploy-images` runs it for real.
#
#   deploy/edge/install.sh --prefix /opt/semcom/venv [--source DIR] [--no-verify | --verify-only]
#       a venv at the prefix (absent or empty) with semcom[edge] from the source tree
#       (default: the checkout this script is in), then the checks below (--verify-only:
#       only the checks, on an existing prefix).
#   deploy/edge/install.sh --os-deps [--user semcom] [--clean-apt]
#       as root on Debian/Ubuntu: the OS libraries the edge needs at run time (OpenCV's libGL
#       and GLib) and, with --user, the service user and its folders (/var/lib/semcom,
#       /models, /etc/semcom). --clean-apt drops apt's lists afterwards (image builds only).
#
# PyTorch: SEMCOM_TORCH_SPEC (default "torch==2.14.1 torchvision==0.29.1") from
# SEMCOM_TORCH_INDEX_URL (default PyTorch's CPU index, https://download.pytorch.org/whl/cpu);
# an empty SEMCOM_TORCH_INDEX_URL means pip's own index (PyPI: its torch is the CUDA build,
# which also runs on a CPU but is ~4 GB larger). Other pip arguments: SEMCOM_PIP_ARGS.
#
# Verification: `semcom --version`, `pip check`, imports of the edge's modules and libraries,
# torchvision's compiled operators (nms), an untrained YOLO11n (built from its .yaml, no
# download) on one blank frame and an untrained timm encoder on one crop (only that the stack
# runs: no weights are involved), and `semcom edge show-config` on deploy/edge.example.yaml.
set -euo pipefail

SEMCOM_PROG=deploy/edge/install.sh
# shellcheck source=SCRIPTDIR/../lib/install-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/install-common.sh"

#: Debian packages the edge's libraries load at run time (opencv-python: libGL, libgthread).
EDGE_OS_PACKAGES="libgl1 libglib2.0-0"

semcom_install_main "${BASH_SOURCE[0]}" edge "$EDGE_OS_PACKAGES" "$@"

[ "$verify" = 1 ] || exit 0
semcom_verify_common "$prefix"
semcom_log "verify: imports, torchvision operators, an untrained YOLO11n and timm encoder"
mkdir -p "$SEMCOM_WORK/home"
# Offline by construction: no settings download, no hub look-up, caches in the scratch folder.
YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR="$SEMCOM_WORK/home" HF_HUB_OFFLINE=1 \
    SEMCOM_CACHE_DIR="$SEMCOM_WORK/home" SEMCOM_MODELS_DIR="$SEMCOM_WORK/home/models" \
    "$prefix/bin/python" - <<'PY'
import importlib
import importlib.util

for name in (
    "edge.cli", "edge.config", "edge.pipeline", "edge.detect", "edge.embed", "edge.uplink",
    "shared.timm_encoder", "cv2", "onnx", "onnxruntime", "aiortc", "lap", "open_clip",
):
    importlib.import_module(name)
for absent in ("fastapi", "sqlalchemy", "faiss"):  # the cloud's stack stays out of the edge
    assert importlib.util.find_spec(absent) is None, f"{absent} is installed on the edge"

import numpy as np
import timm
import torch
import torchvision
from ultralytics import YOLO

boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
kept = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist()
assert kept == [0], kept
results = YOLO("yolo11n.yaml", task="detect").predict(
    np.zeros((320, 320, 3), np.uint8), imgsz=320, verbose=False
)
assert len(results) == 1
encoder = timm.create_model("mobilenetv2_050", pretrained=False, num_classes=0).eval()
with torch.no_grad():
    features = encoder(torch.zeros(1, 3, 96, 96))
assert features.shape == (1, 1280), features.shape
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: ok")
PY
SEMCOM_MODELS_DIR="$SEMCOM_WORK/home/models" \
    "$prefix/bin/semcom" edge show-config --config "$source/deploy/edge.example.yaml" >/dev/null
semcom_log "verify: semcom edge show-config --config deploy/edge.example.yaml: ok"
semcom_log "semcom[edge] in $prefix: verified"
