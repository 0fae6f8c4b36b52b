"""The Kubernetes manifests (deploy/k8s, kustomize): every overlay rendered by ``kubectl
kustomize`` and validated strictly against the Kubernetes schemas bundled in
kubernetes-validate (offline), as ``make deploy-manifests`` does; and what matters for running
the cloud: probes on /healthz, several replicas only with the shared backends, production's
replicas, disruption budget and TLS ingress, and the cloud config of every overlay validating as
the cloud itself loads it (file + SEMCOM_CLOUD__ environment). Security checks:
test_k8s_security.py; compose: test_compose.py. These tests skip without kubectl.
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.deploy.k8s_render import (
    CLOUD,
    OVERLAYS,
    cloud_config_of,
    cloud_container,
    k8s_versions,
    named,
    needs_kubectl,
    of_kind,
    overlay,
    render,
)

# ------------------------------------------------------------------------ Kubernetes schemas


def test_every_overlay_is_checked() -> None:
    assert {"single", "production"} <= set(OVERLAYS)


@needs_kubectl
@pytest.mark.parametrize("target", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_renders_and_validates_strictly(target: str) -> None:
    resources = render(target)
    assert resources
    for version in k8s_versions():
        for resource in resources:
            what = f"{target}: {resource['kind']}/{resource['metadata']['name']}"
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{what} is not valid Kubernetes {version}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                pytest.fail(f"{what}: {exc.message}")


def test_the_validator_rejects_what_it_should() -> None:
    """Strict validation catches a misspelt field (it would be dropped silently otherwise)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    bad = {**pod, "spec": {"containers": [{"name": "c", "image": "i:1", "readinesProbe": {}}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, k8s_versions()[0], strict=True)


# ------------------------------------------------------------------------ the cloud's pods


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_cloud_probes_on_healthz(name: str) -> None:
    container = cloud_container(overlay(name))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert get["port"] in ports or get["port"] in ports.values(), probe
    liveness = container["livenessProbe"]
    # a short database outage (healthz answers 503) must not restart every replica at once
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_cloud_config_validates_as_the_pods_load_it(name: str, tmp_path: Path) -> None:
    resources = overlay(name)
    config = cloud_config_of(resources, tmp_path)
    container = cloud_container(resources)
    assert config.host == "0.0.0.0"
    assert config.port in {p["containerPort"] for p in container["ports"]}
    assert config.api_tokens, "no API client: the dashboard and /metrics are unreachable"
    assert config.edges, "no edge may connect"
    # The database and Qdrant are the in-cluster Services, or external hosts.
    assert config.database is not None
    assert config.database.startswith("postgresql+psycopg://")
    services = {s["metadata"]["name"] for s in of_kind(resources, "Service")}
    db_host = re.search(r"@([^:/]+)", config.database)
    assert db_host
    assert config.index.qdrant_url is not None
    qdrant_host = re.search(r"//([^:/]+)", config.index.qdrant_url)
    assert qdrant_host
    if of_kind(resources, "StatefulSet"):
        assert {db_host.group(1), qdrant_host.group(1)} <= services
    else:
        assert config.database.split("?")[1].count("sslmode=verify-full") == 1
        assert config.index.qdrant_url.startswith("https://")


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_several_replicas_only_with_shared_catalog_and_vectors(name: str, tmp_path: Path) -> None:
    """faiss keeps an index per process: replicas would each see a part of the vectors."""
    resources = overlay(name)
    replicas = named(resources, "Deployment", CLOUD)["spec"].get("replicas", 1)
    if replicas > 1:
        config = cloud_config_of(resources, tmp_path)
        assert config.index.backend == "qdrant"
        assert config.index.qdrant_url is not None
        assert config.database is not None
        assert config.database.startswith("postgresql")


@needs_kubectl
@pytest.mark.parametrize("name", [o for o in OVERLAYS if o.startswith("production")])
def test_production_has_replicas_pdb_and_tls_ingress(name: str) -> None:
    resources = overlay(name)
    deployment = named(resources, "Deployment", CLOUD)
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    selector = deployment["spec"]["selector"]["matchLabels"]

    (pdb,) = of_kind(resources, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"].get("maxUnavailable", 0) < deployment["spec"]["replicas"]

    (ingress,) = of_kind(resources, "Ingress")
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"]
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert hosts == tls["hosts"]
    service = named(resources, "Service", CLOUD)
    assert service["spec"]["selector"] == selector
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for rule in ingress["spec"]["rules"]:
        (path,) = rule["http"]["paths"]  # one path: HTTP and the WebSocket uplink alike
        assert path["path"] == "/"
        assert path["pathType"] == "Prefix"
        assert path["backend"]["service"]["name"] == CLOUD
        assert path["backend"]["service"]["port"]["name"] in port_names
    # WebSocket uplinks and the SSE live feed stay open far past the default 60 s
    timeout = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]
    assert int(timeout) >= 600
    # every replica mounts the models volume, on any node
    models = named(resources, "PersistentVolumeClaim", "semcom-models")
    assert models["spec"]["accessModes"] == ["ReadWriteMany"]
