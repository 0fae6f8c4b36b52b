"""The deployment manifests: deploy/k8s (kustomize) and deploy/compose.yaml.

The same checks as ``make deploy-manifests`` - every overlay rendered by ``kubectl kustomize``
and validated strictly against the Kubernetes schemas bundled in kubernetes-validate (offline),
the compose file against the Compose Specification schema vendored in check-jsonschema - and
what matters for running semcom: probes on /healthz, several replicas only with the shared
backends, secrets only from Secrets (never in a ConfigMap or a literal env value), pinned
images, non-root pods, resource requests, and the cloud config of every overlay and of the
compose stack validating as the cloud itself loads it (file + SEMCOM_CLOUD__ environment).
The Kubernetes tests skip without kubectl.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cloud.config import CloudConfig, load_config
from edge.config import load_uplink_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
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
    (container,) = [c for c in spec["containers"] if c["name"] == "cloud"]
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


# ------------------------------------------------------------------------ compose


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def compose_spec_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema, as check-jsonschema vendors it."""
    files = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(files.joinpath("compose-spec.json").read_text())
    assert isinstance(schema, dict)
    return schema


def test_compose_validates_against_the_compose_specification() -> None:
    schema = compose_spec_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose()), key=lambda e: e.path)
    assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)
    # the schema does reject what it should
    bad = {"services": {"cloud": {"image": "x:1", "healthchek": {}}}}
    assert list(validator_class(schema).iter_errors(bad))


def interpolate(value: str, given: Mapping[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``; required
    variables get made-up values (URL-safe, like the documented ones)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if given and name in given:
            return given[name]
        if op == ":-":
            return arg
        assert op == ":?", f"${{{name}}} without a default must be required (:?)"
        return f"made-up-{name.lower().replace('_', '-')}"

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, value)


def compose_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))


def test_compose_variables_are_documented() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (DEPLOY / "compose/env.example").read_text(), re.M)
    )
    assert compose_variables() <= documented
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE.read_text()))
    assert required == {
        "POSTGRES_PASSWORD",
        "QDRANT_API_KEY",
        "SEMCOM_API_TOKEN",
        "SEMCOM_SIM_EDGE_TOKEN",
    }


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: interpolate(str(v)) for k, v in env.items()}


def test_compose_services_are_healthy_ordered_and_restarted() -> None:
    services = compose()["services"]
    assert {"cloud", "postgres", "qdrant", "edge-sim"} <= set(services)
    for name, service in services.items():
        assert service.get("restart", "no") != "no", name
        image = interpolate(service["image"])
        assert ":" in image, name
        assert not image.endswith(":latest"), name
        for dep, cond in service.get("depends_on", {}).items():
            assert cond["condition"] == "service_healthy", f"{name} -> {dep}"
            assert "healthcheck" in services[dep], dep
    for name in ("cloud", "postgres", "qdrant"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
        assert "profiles" not in services[name], name
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    cloud_check = " ".join(services["cloud"]["healthcheck"]["test"])
    assert "/healthz" in cloud_check
    assert "/readyz" in " ".join(services["qdrant"]["healthcheck"]["test"])
    assert set(services["cloud"]["depends_on"]) == {"postgres", "qdrant"}
    assert services["edge-sim"]["profiles"] == ["sim"]
    assert services["cloud"]["build"] == {"context": "..", "dockerfile": "deploy/cloud/Dockerfile"}
    assert (ROOT / services["edge-sim"]["build"]["dockerfile"]).is_file()
    # volumes keep the data
    volumes = {v["target"]: v for s in services.values() for v in s.get("volumes", [])}
    assert volumes["/var/lib/postgresql/data"]["type"] == "volume"
    assert volumes["/qdrant/storage"]["type"] == "volume"


def test_compose_cloud_config_and_simulated_edge_validate(tmp_path: Path) -> None:
    services = compose()["services"]
    cloud = services["cloud"]
    command = [*cloud["entrypoint"], *cloud["command"]]
    assert command[:3] == ["semcom", "cloud", "serve"]
    config_path = command[command.index("--config") + 1]
    (mount,) = [v for v in cloud["volumes"] if v["target"] == config_path]
    assert mount["read_only"] is True
    config = load_config(DEPLOY / mount["source"], environ=service_env(cloud))
    assert config.host == "0.0.0.0"
    published = interpolate(cloud["ports"][0])
    assert published.endswith(f":{config.port}")
    assert config.database is not None
    assert config.database.startswith("postgresql+psycopg://semcom:made-up-postgres-password@")
    db_host = re.search(r"@([^:/]+)", config.database)
    assert db_host
    assert db_host.group(1) in services
    assert config.index.backend == "qdrant"
    assert config.index.qdrant_url == "http://qdrant:6333"
    assert config.index.qdrant_api_key is not None
    qdrant_env = service_env(services["qdrant"])
    assert config.index.qdrant_api_key.get_secret_value() == qdrant_env["QDRANT__SERVICE__API_KEY"]
    assert config.api_tokens

    # The simulated edge: its uplink config from the environment, as `edge replay` loads it.
    sim = services["edge-sim"]
    assert sim["command"][:3] == ["edge", "replay", "--synthetic"]
    edge_id, uplink = load_uplink_config(None, {}, environ=service_env(sim))
    assert edge_id in config.edges
    assert uplink.transport == "websocket"
    assert uplink.cloud == f"http://cloud:{config.port}"
    token = uplink.token.get_secret_value().encode()
    assert config.edges[edge_id].digest() == hashlib.sha256(token).digest()


def test_sim_edge_image_pins_agree_with_pyproject() -> None:
    """compose/sim-edge.Dockerfile installs the edge's uplink libraries by hand."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    edge = {re.split(r"[<>=!~\[ ]", spec)[0].lower(): spec for spec in extras["edge"]}
    text = (DEPLOY / "compose/sim-edge.Dockerfile").read_text()
    pinned = re.findall(r'"([A-Za-z0-9_.-]+(?:\[[^\]]*\])?[<>=!~][^"]*)"', text)
    assert len(pinned) >= 5
    for spec in pinned:
        name = re.split(r"[<>=!~\[ ]", spec)[0].lower()
        if name == "opencv-python-headless":  # ultralytics brings OpenCV on a real edge
            continue
        assert edge.get(name) == spec, f"{spec}: pyproject.toml's edge extra has {edge.get(name)}"
