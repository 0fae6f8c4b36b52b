"""Reading the deployment: deploy/k8s rendered by ``kubectl kustomize``, and the cloud's pod
as the kubelet would start it (environment, config file). Shared by the tests of tests/deploy.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud.config import CloudConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl not installed: kustomize overlays cannot be rendered"
)

CLOUD = "semcom-cloud"
#: Secret-looking names: their values come from Secrets, never from a file in git.
SECRET_WORD = re.compile(r"(token|password|passwd|api_?key|secret|credential)", re.IGNORECASE)


def k8s_versions() -> list[str]:
    """The Kubernetes versions `make deploy-manifests` validates against (one source)."""
    found = re.search(r"^K8S_VERSIONS\s*\?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert found, "Makefile: K8S_VERSIONS ?= ... is missing"
    return found.group(1).split()


@functools.cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize deploy/k8s/TARGET``: its resources."""
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / target)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def overlay(name: str) -> tuple[dict[str, Any], ...]:
    return render(f"overlays/{name}")


def of_kind(resources: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def named(resources: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(resources: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for r in resources:
        if r["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield f"{r['kind']}/{r['metadata']['name']}", r["spec"]["template"]["spec"]


def containers(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def cloud_container(resources: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    spec = named(resources, "Deployment", CLOUD)["spec"]["template"]["spec"]
    found: list[dict[str, Any]] = [c for c in spec["containers"] if c["name"] == "cloud"]
    (container,) = found
    return container


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: only variables listed earlier; ``$$`` escapes."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        assert name in env, f"$({name}) refers to no variable listed before it"
        return env[name]

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", one, value)


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it, Secret values made up."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = f"made-up-{ref['name']}-{ref['key']}"
    return env


def cloud_config_of(resources: tuple[dict[str, Any], ...], tmp_path: Path) -> CloudConfig:
    """The cloud's config as its pods load it: the ConfigMap's file, then the environment."""
    container = cloud_container(resources)
    spec = named(resources, "Deployment", CLOUD)["spec"]["template"]["spec"]
    config_arg = container["command"][container["command"].index("--config") + 1]
    (mount,) = [m for m in container["volumeMounts"] if config_arg.startswith(m["mountPath"])]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    config_map = named(resources, "ConfigMap", volume["configMap"]["name"])
    key = config_arg[len(mount["mountPath"]) :].lstrip("/")
    path = tmp_path / "cloud.yaml"
    path.write_text(config_map["data"][key])
    return load_config(path, environ=container_env(container))
