"""The container images (deploy/edge/Dockerfile, deploy/edge/Dockerfile.jetson,
deploy/cloud/Dockerfile), read without Docker: multi-stage, every RUN a script of deploy/, a
non-root user, a health check, models from a volume, `semcom` as the entry point with a
command line the CLI accepts, a build context that leaves model files out. The scripts run
for real in `make deploy-images`; hadolint and shellcheck run there too."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest

from tests.deploy.test_systemd_units import options, resolve

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGES = {
    "edge": DEPLOY / "edge" / "Dockerfile",
    "edge-jetson": DEPLOY / "edge" / "Dockerfile.jetson",
    "cloud": DEPLOY / "cloud" / "Dockerfile",
}
SCRIPT = {
    "edge": "deploy/edge/install.sh",
    "edge-jetson": "deploy/edge/install-jetson.sh",
    "cloud": "deploy/cloud/install.sh",
}
MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".safetensors", ".engine")

Instruction = tuple[str, str]


def instructions(path: Path) -> list[Instruction]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, f"{path}: ends inside a continued line"
    return out


def stages(path: Path) -> dict[str, list[Instruction]]:
    """Stage name -> its instructions (FROM first)."""
    found: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for keyword, args in instructions(path):
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", args, re.IGNORECASE)
            assert match, f"{path.name}: unnamed stage {args!r}"
            current = found.setdefault(match.group(2), [])
        if current is not None:
            current.append((keyword, args))
    return found


def values(stage: list[Instruction], keyword: str) -> list[str]:
    return [args for k, args in stage if k == keyword]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in values(stage, "ENV"):
        for item in shlex.split(args):
            key, sep, value = item.partition("=")
            assert sep, f"ENV {item!r}: use KEY=VALUE"
            env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), args
    return [str(a) for a in parsed]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_multi_stage_build_then_runtime(image: str) -> None:
    found = stages(IMAGES[image])
    assert list(found) == ["build", "runtime"]
    runtime = found["runtime"]
    copied = [a for a in values(runtime, "COPY") if a.startswith("--from=build")]
    assert copied == ["--from=build /opt/semcom/venv /opt/semcom/venv"]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_every_run_step_is_a_deploy_script(image: str) -> None:
    """So that the same steps run outside Docker (make deploy-images)."""
    runs = [args for stage in stages(IMAGES[image]).values() for args in values(stage, "RUN")]
    assert runs
    for run in runs:
        command = re.sub(r"^(--mount=\S+ )+", "", run)
        for step in command.split("&&"):
            words = shlex.split(step)
            assert words[0] == "bash", run
            script = re.sub(r"^(/tmp/|/src/)?", "", words[1])
            assert script == SCRIPT[image], run
            assert os.access(ROOT / script, os.X_OK), script


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_runtime_runs_as_non_root_with_health_check(image: str) -> None:
    runtime = stages(IMAGES[image])["runtime"]
    keywords = [k for k, _ in runtime]
    (user,) = values(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) > 0, user
    assert int(gid or uid) > 0, user
    # the --os-deps step that creates the user comes first; nothing runs as root after USER
    assert "RUN" not in keywords[keywords.index("USER") :]
    assert shlex.split(values(runtime, "RUN")[0])[-4:-1] == ["--os-deps", "--user", "semcom"]
    (health,) = values(runtime, "HEALTHCHECK")
    options_part, _, command = health.partition(" CMD ")
    assert re.search(r"--interval=\d+s", options_part)
    assert "--start-period=" in options_part
    side = "cloud" if image == "cloud" else "edge"
    assert exec_form(command) == [
        "/opt/semcom/venv/bin/python",
        "/opt/semcom/healthcheck.py",
        f"--{side}",
    ]
    assert "deploy/healthcheck.py /opt/semcom/healthcheck.py" in values(runtime, "COPY")
    assert values(runtime, "STOPSIGNAL") == ["SIGTERM"]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_models_come_from_a_volume_and_config_from_a_mounted_file(image: str) -> None:
    runtime = stages(IMAGES[image])["runtime"]
    env = env_of(runtime)
    assert env["SEMCOM_MODELS_DIR"] == "/models"
    assert env["PATH"].startswith("/opt/semcom/venv/bin:")
    (volumes,) = values(runtime, "VOLUME")
    assert set(exec_form(volumes)) == {"/models", "/var/lib/semcom"}
    side = "cloud" if image == "cloud" else "edge"
    assert exec_form(values(runtime, "ENTRYPOINT")[0]) == ["semcom"]
    (cmd,) = values(runtime, "CMD")
    command, args = resolve(exec_form(cmd))
    assert args[args.index("--config") + 1] == f"/etc/semcom/{side}.yaml"
    given = {a for a in args if a.startswith("-")}
    assert given <= options(command), given - options(command)
    for stage in stages(IMAGES[image]).values():
        for copy in values(stage, "COPY") + values(stage, "ADD"):
            assert not copy.endswith(MODEL_SUFFIXES), f"a model file baked in: {copy}"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_build_context_leaves_out_models_venvs_and_git(image: str) -> None:
    """BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile: an allow-list."""
    path = IMAGES[image].with_name(IMAGES[image].name + ".dockerignore")
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "shared",
        "edge",
        "cloud",
        "sim",
        "semcom",
        "deploy",
    }
    for suffix in MODEL_SUFFIXES:
        assert f"**/*{suffix}" in patterns, suffix


@pytest.mark.parametrize("image", ["edge", "cloud"])
def test_cpu_images_pin_the_torch_the_scripts_default_to(image: str) -> None:
    """The Dockerfiles' build args and the scripts' defaults (used outside Docker) agree."""
    common = (DEPLOY / "lib" / "install-common.sh").read_text()
    spec = re.search(r'^SEMCOM_DEFAULT_TORCH_SPEC="([^"]+)"', common, re.M)
    index = re.search(r'^SEMCOM_DEFAULT_TORCH_INDEX_URL="([^"]+)"', common, re.M)
    assert spec
    assert index
    args = values(stages(IMAGES[image])["build"], "ARG")
    assert f'SEMCOM_TORCH_SPEC="{spec.group(1)}"' in args
    assert f"SEMCOM_TORCH_INDEX_URL={index.group(1)}" in args


@pytest.mark.parametrize("image", ["edge", "edge-jetson"])
def test_edge_health_listener_variable_is_one_the_edge_accepts(image: str) -> None:
    """ASSUMPTION of the edge images: SEMCOM_EDGE__HEALTH__LISTEN turns on the edge's
    /healthz listener (health.listen). Checked against edge/config.py once it has the key."""
    from edge import config as edge_config

    if not hasattr(edge_config, "HealthConfig"):
        pytest.skip("edge/config.py has no health section yet: `edge run` would refuse it")
    env = env_of(stages(IMAGES[image])["runtime"])
    listen = env["SEMCOM_EDGE__HEALTH__LISTEN"]
    loaded = edge_config.load_config(
        DEPLOY / "edge.example.yaml", environ={"SEMCOM_EDGE__HEALTH__LISTEN": listen}
    )
    assert loaded.health.listen == listen
    assert listen.startswith("127.0.0.1:")  # the HEALTHCHECK asks the loopback address
