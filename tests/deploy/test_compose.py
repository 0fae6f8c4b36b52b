"""deploy/compose.yaml: valid against the Compose Specification schema vendored in
check-jsonschema (as ``make deploy-manifests`` checks it), its variables documented, services
healthy, ordered and restarted, the cloud config and the simulated edge's uplink config valid as
the programs load them, and the simulated edge image's pins in step with pyproject.toml.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from cloud.config import load_config
from edge.config import load_uplink_config
from tests.deploy.k8s_render import DEPLOY, ROOT

COMPOSE = DEPLOY / "compose.yaml"


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
