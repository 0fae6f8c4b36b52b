"""The Kubernetes manifests' security and resources: secrets only from Secrets (never in a
ConfigMap or a literal env value, placeholders marked and none deployed in production), pinned
images, non-root "restricted" pods, resource requests and limits, and volumes and ConfigMaps
that resolve. These tests skip without kubectl.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from tests.deploy.k8s_render import (
    OVERLAYS,
    SECRET_WORD,
    cloud_container,
    container_env,
    containers,
    needs_kubectl,
    of_kind,
    overlay,
    pod_specs,
    render,
)

# ------------------------------------------------------------------------ secrets


@needs_kubectl
@pytest.mark.parametrize("target", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_no_plain_text_secrets_in_configmaps_or_env(target: str) -> None:
    resources = render(target)
    for config_map in of_kind(resources, "ConfigMap"):
        for key, text in config_map.get("data", {}).items():
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), f"{key}: a URL with a password"
            for path, value in leaves(yaml.safe_load(text)):
                if SECRET_WORD.search(path[-1]) and path[-1] != "token_sha256":
                    assert value in (None, ""), f"{config_map['metadata']['name']}: {path}"
    for where, spec in pod_specs(resources):
        for container in containers(spec):
            for var in container.get("env", []):
                if SECRET_WORD.search(var["name"]):
                    assert "secretKeyRef" in var.get("valueFrom", {}), f"{where}: {var['name']}"
                if "value" in var:  # a URL may carry a password only by reference
                    assert not re.search(r"://[^/\s:@]+:(?!\$\()[^/\s@]+@", var["value"]), where


def leaves(tree: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from leaves(value, (*path, str(key)))
    elif path:
        yield path, tree


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_secret_references_match_the_documented_secrets(name: str) -> None:
    """Every secretKeyRef names a Secret and key of the base (placeholders there): overlays that
    drop the placeholders expect the same names and keys created out of band."""
    documented = {
        (s["metadata"]["name"], key)
        for s in of_kind(render("base"), "Secret")
        for key in s["stringData"]
    }
    resources = overlay(name)
    deployed = {
        (s["metadata"]["name"], key)
        for s in of_kind(resources, "Secret")
        for key in s.get("stringData", s.get("data", {}))
    }
    for where, spec in pod_specs(resources):
        for container in containers(spec):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (ref["name"], ref["key"]) in documented, f"{where}: {ref}"
                    if deployed:
                        assert (ref["name"], ref["key"]) in deployed, f"{where}: {ref}"


@needs_kubectl
def test_placeholder_secrets_are_marked_and_production_deploys_none() -> None:
    for secret in of_kind(render("base"), "Secret"):
        assert secret["metadata"]["annotations"]["semcom.dev/placeholder"].startswith("true")
        assert all(v.startswith("REPLACE-ME") for v in secret["stringData"].values())
    for name in OVERLAYS:
        if name.startswith("production"):
            assert not of_kind(overlay(name), "Secret"), name


# ------------------------------------------------------------------------ every pod


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_images_are_pinned(name: str) -> None:
    for where, spec in pod_specs(overlay(name)):
        for container in containers(spec):
            image = container["image"]
            name_part, _, tag = image.rpartition(":")
            assert "@sha256:" in image or (name_part and "/" not in tag), f"{where}: {image}"
            assert tag != "latest", f"{where}: {image}"


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_pods_run_as_non_root_and_restricted(name: str) -> None:
    """The "restricted" Pod Security Standard the namespace enforces."""
    for where, spec in pod_specs(overlay(name)):
        pod = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in containers(spec):
            ctx = {**pod, **container.get("securityContext", {})}
            assert ctx["runAsNonRoot"] is True, where
            assert ctx.get("runAsUser", 1) != 0, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_resource_requests_and_limits(name: str) -> None:
    for where, spec in pod_specs(overlay(name)):
        for container in containers(spec):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_volumes_and_config_maps_resolve(name: str) -> None:
    resources = overlay(name)
    config_maps = {c["metadata"]["name"] for c in of_kind(resources, "ConfigMap")}
    claims = {c["metadata"]["name"] for c in of_kind(resources, "PersistentVolumeClaim")}
    for where, spec in pod_specs(resources):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        templates = set()
        for r in of_kind(resources, "StatefulSet"):
            if f"StatefulSet/{r['metadata']['name']}" == where:
                templates = {t["metadata"]["name"] for t in r["spec"]["volumeClaimTemplates"]}
        for container in containers(spec):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in templates, where
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, where
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where
    models = [
        m for m in cloud_container(resources)["volumeMounts"] if m["mountPath"].endswith("models")
    ]
    assert len(models) == 1
    assert models[0]["readOnly"] is True
    env = container_env(cloud_container(resources))
    assert env["SEMCOM_MODELS_DIR"] == models[0]["mountPath"]
