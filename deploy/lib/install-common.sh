# shellcheck shell=bash
# Functions shared by deploy/edge/install.sh, deploy/edge/install-jetson.sh and
# deploy/cloud/install.sh. Sourced, never run. The caller sets SEMCOM_PROG (its name, for
# messages) and `set -euo pipefail`.
#
# Environment read here (all optional):
#   SEMCOM_PYTHON          the interpreter that makes the venv (default: python3; >= 3.10)
#   SEMCOM_PIP_ARGS        extra pip arguments for every install (e.g. "--no-cache-dir")

semcom_log() {
    printf '%s: %s\n' "${SEMCOM_PROG:-install}" "$*" >&2
}

# semcom_die CODE MESSAGE...: exit CODE after one line on stderr (2: usage, 3: wrong platform).
semcom_die() {
    local code=$1
    shift
    printf '%s: error: %s\n' "${SEMCOM_PROG:-install}" "$*" >&2
    exit "$code"
}

# semcom_default_source: the checkout this script lies in (deploy/<side>/ -> ../..).
semcom_default_source() {
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
    (cd "$here/../.." && pwd)
}

# semcom_check_source DIR: DIR is a semcom source tree.
semcom_check_source() {
    local src=$1
    if ! grep -qs '^name = "semcom"$' "$src/pyproject.toml"; then
        semcom_die 2 "--source $src is not a semcom source tree (no pyproject.toml naming semcom)"
    fi
}

# semcom_stage_source SRC DEST: copy the source tree into DEST for pip to build from, leaving
# out version control, virtualenvs, caches and build leftovers. pip builds a local project in
# place (setuptools writes build/ and *.egg-info there, and a stale build/lib can slip removed
# modules into the wheel); building from a clean copy keeps the checkout untouched.
semcom_stage_source() {
    local src=$1 dest=$2 entry name
    for entry in "$src"/* "$src"/.[!.]*; do
        [ -e "$entry" ] || continue
        name=${entry##*/}
        case $name in
        .git | .venv | venv | build | dist | out | *.egg-info | .*cache | .hypothesis | \
            .test-artifacts | node_modules | semcom-data | .tox | .nox)
            continue
            ;;
        esac
        cp -a "$entry" "$dest/"
    done
}

# semcom_python_ok PYTHON: PYTHON runs and is >= 3.10.
semcom_python_ok() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null ||
        semcom_die 2 "$1 is missing or older than Python 3.10 (set SEMCOM_PYTHON)"
}

# semcom_make_venv PREFIX [venv options...]: a new venv at PREFIX (absent or an empty folder),
# with a current pip.
semcom_make_venv() {
    local prefix=$1
    shift
    if [ -e "$prefix" ] && [ -n "$(ls -A "$prefix" 2>/dev/null)" ]; then
        semcom_die 2 "--prefix $prefix exists and is not empty (give a new or empty folder)"
    fi
    local python=${SEMCOM_PYTHON:-python3}
    semcom_python_ok "$python"
    semcom_log "creating a venv at $prefix ($("$python" --version 2>&1))"
    "$python" -m venv "$@" "$prefix"
    semcom_pip "$prefix" install --upgrade pip
}

# semcom_pip PREFIX ARGS...: the venv's pip, quiet, plus $SEMCOM_PIP_ARGS for `install`.
semcom_pip() {
    local prefix=$1
    shift
    local pip_args=()
    if [ "$1" = install ] && [ -n "${SEMCOM_PIP_ARGS:-}" ]; then
        read -r -a pip_args <<<"$SEMCOM_PIP_ARGS"
    fi
    "$prefix/bin/python" -m pip --quiet --disable-pip-version-check "$@" "${pip_args[@]}"
}

# semcom_install_torch PREFIX: PyTorch first, from the CPU build index unless told otherwise.
#   SEMCOM_TORCH_SPEC       what to install (default: the CPU pair below; "" = skip this step
#                           and let pip pick torch for the extra's packages: PyPI's CUDA build)
#   SEMCOM_TORCH_INDEX_URL  where from (default: PyTorch's CPU index; "" = pip's own index)
# torch and torchvision must come as a pair built alike: a CPU torch with PyPI's CUDA
# torchvision cannot load torchvision's operators (torchvision::nms), which breaks timm and
# ultralytics. The install verification runs torchvision.ops.nms to catch exactly that.
SEMCOM_DEFAULT_TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
SEMCOM_DEFAULT_TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"
semcom_install_torch() {
    local prefix=$1
    local spec=${SEMCOM_TORCH_SPEC-$SEMCOM_DEFAULT_TORCH_SPEC}
    local index=${SEMCOM_TORCH_INDEX_URL-$SEMCOM_DEFAULT_TORCH_INDEX_URL}
    if [ -z "$spec" ]; then
        semcom_log "SEMCOM_TORCH_SPEC is empty: torch comes with the extra's packages"
        return 0
    fi
    local reqs=() where="pip's own index"
    read -r -a reqs <<<"$spec"
    [ -z "$index" ] || where=$index
    semcom_log "installing ${reqs[*]} from $where"
    if [ -n "$index" ]; then
        semcom_pip "$prefix" install --index-url "$index" "${reqs[@]}"
    else
        semcom_pip "$prefix" install "${reqs[@]}"
    fi
}

# semcom_pin_installed PREFIX FILE NAME...: a pip constraints file pinning each installed
# distribution NAME to its exact version (local label included, e.g. 2.14.1+cpu), so that
# installing the project keeps the PyTorch already there instead of swapping it for another
# build. Names not installed are left out.
semcom_pin_installed() {
    local prefix=$1 file=$2
    shift 2
    "$prefix/bin/python" - "$@" >"$file" <<'PY'
import sys
from importlib import metadata

for name in sys.argv[1:]:
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
PY
}

# semcom_workdir: SEMCOM_WORK, a scratch folder removed when the script exits.
semcom_workdir() {
    SEMCOM_WORK=$(mktemp -d "${TMPDIR:-/tmp}/semcom-install.XXXXXX")
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "rm -rf '$SEMCOM_WORK'" EXIT
}

# semcom_install_project PREFIX SRC EXTRA CONSTRAINTS: semcom[EXTRA] from a clean copy of SRC
# (needs semcom_workdir).
semcom_install_project() {
    local prefix=$1 src=$2 extra=$3 constraints=$4
    local stage=$SEMCOM_WORK/src
    mkdir -p "$stage"
    semcom_stage_source "$src" "$stage"
    semcom_log "installing semcom[$extra] from $src (constraints: $(tr '\n' ' ' <"$constraints"))"
    semcom_pip "$prefix" install --constraint "$constraints" "${stage}[${extra}]"
}

# semcom_verify_common PREFIX: the CLI starts and pip finds no broken requirement.
semcom_verify_common() {
    local prefix=$1
    semcom_log "verify: $("$prefix/bin/semcom" --version)"
    "$prefix/bin/python" -m pip check --disable-pip-version-check >&2
}

# semcom_os_setup PACKAGES USER GROUPS CLEAN: the run-time side of an image (or a host), as
# root: the Debian/Ubuntu PACKAGES (space-separated; "" = none), then, when USER is set, the
# service user (uid 10001, like deploy/compose's images; home and working folder
# /var/lib/semcom, no login shell) in the extra GROUPS (comma-separated; "" = none) and the
# folders /var/lib/semcom (the user's), /models and /etc/semcom. CLEAN=1 drops apt's lists
# afterwards (in an image build; never on a host).
semcom_os_setup() {
    local packages=$1 user=$2 groups=$3 clean=$4
    [ "$(id -u)" = 0 ] || semcom_die 2 "--os-deps needs root (it runs apt-get and useradd)"
    if [ -n "$packages" ]; then
        command -v apt-get >/dev/null ||
            semcom_die 2 "--os-deps knows Debian/Ubuntu only (no apt-get): install $packages"
        local pkgs=()
        read -r -a pkgs <<<"$packages"
        local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0)
        semcom_log "installing OS packages: ${pkgs[*]}"
        # Without package lists (a fresh image) the install fails: update, then try again.
        "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
            { "${apt[@]}" update >/dev/null && "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >/dev/null; }
        if [ "$clean" = 1 ]; then
            apt-get clean
            rm -rf /var/lib/apt/lists/*
        fi
    else
        semcom_log "no OS packages needed"
    fi
    if [ -n "$user" ]; then
        if id -u "$user" >/dev/null 2>&1; then
            semcom_log "user $user exists"
        else
            semcom_log "adding user $user (uid 10001)"
            useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/semcom \
                --shell /usr/sbin/nologin ${groups:+--groups "$groups"} "$user"
        fi
        install -d -o "$user" -g "$user" -m 0750 /var/lib/semcom
        install -d -m 0755 /models /etc/semcom
    fi
}

# The steps both CPU install scripts share: their options, --os-deps, the venv and the
# project's install. Usage: semcom_install_main SCRIPT EXTRA OS_PACKAGES "$@"; sets the
# globals `prefix` (absolute), `source` (the project tree) and `verify` (1: the caller runs
# its checks next).
# shellcheck disable=SC2034 # prefix, source and verify are read by the calling script
semcom_install_main() {
    local script=$1 extra=$2 os_packages=$3
    shift 3
    local install=1 os_deps=0 user="" clean_apt=0
    prefix="" source="" verify=1
    while [ $# -gt 0 ]; do
        case $1 in
        --prefix) prefix=${2:?--prefix needs a folder} && shift ;;
        --source) source=${2:?--source needs a folder} && shift ;;
        --no-verify) verify=0 ;;
        --verify-only) install=0 ;;
        --os-deps) os_deps=1 ;;
        --user) user=${2:?--user needs a name} && shift ;;
        --clean-apt) clean_apt=1 ;;
        -h | --help) semcom_usage "$script" 0 ;;
        *) semcom_log "unknown argument: $1" && semcom_usage "$script" 2 >&2 ;;
        esac
        shift
    done
    if [ "$os_deps" = 1 ]; then
        semcom_os_setup "$os_packages" "$user" "" "$clean_apt"
        exit 0
    fi
    [ -n "$prefix" ] || semcom_die 2 "give --prefix DIR (or --os-deps); --help says more"
    source=${source:-$(semcom_default_source)}
    semcom_check_source "$source"
    semcom_workdir
    if [ "$install" = 1 ]; then
        semcom_make_venv "$prefix"
        prefix=$(cd "$prefix" && pwd)
        semcom_install_torch "$prefix"
        semcom_pin_installed "$prefix" "$SEMCOM_WORK/constraints.txt" torch torchvision
        semcom_install_project "$prefix" "$source" "$extra" "$SEMCOM_WORK/constraints.txt"
    else
        [ -x "$prefix/bin/semcom" ] || semcom_die 2 "--verify-only: no $prefix/bin/semcom"
        prefix=$(cd "$prefix" && pwd)
    fi
}

# A script's header comment (lines 2 to `set -euo`) as its help; exits with $2.
semcom_usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$1"
    exit "${2:-0}"
}
