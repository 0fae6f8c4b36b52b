"""deploy/semcom-edge.service and deploy/semcom-cloud.service: the fields that matter, the
command lines against the real CLI, and ``systemd-analyze verify`` (plus the cloud unit's
exposure score) where systemd is installed."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from semcom.cli import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = {"edge": DEPLOY / "semcom-edge.service", "cloud": DEPLOY / "semcom-cloud.service"}
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

Unit = dict[str, dict[str, list[str]]]


def read_unit(path: Path) -> Unit:
    """Sections -> keys -> every value (systemd repeats keys such as Environment=)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The semcom (sub)command that ``argv`` names, and the arguments left for it."""
    command: click.Command = cli
    args = list(argv)
    while isinstance(command, click.Group):
        name = args.pop(0)
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"no command {name!r}"
        command = sub
    return command, args


def options(command: click.Command) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("side", sorted(UNITS))
def test_unit_runs_semcom_as_its_user_and_stops_on_sigterm(side: str) -> None:
    unit = read_unit(UNITS[side])
    assert set(unit) == {"Unit", "Service", "Install"}
    assert "network-online.target" in one(unit, "Unit", "After").split()
    assert "network-online.target" in one(unit, "Unit", "Wants").split()
    assert one(unit, "Service", "Type") == "simple"
    assert one(unit, "Service", "User") == "semcom"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert 10 <= int(one(unit, "Service", "TimeoutStopSec")) <= 90
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "EnvironmentFile") == f"-/etc/semcom/{side}.env"
    assert "HF_HUB_OFFLINE=1" in unit["Service"]["Environment"]
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("side", sorted(UNITS))
def test_unit_command_line_is_one_the_cli_accepts(side: str) -> None:
    argv = shlex.split(one(read_unit(UNITS[side]), "Service", "ExecStart"))
    assert argv[0] == "/opt/semcom/venv/bin/semcom"
    command, args = resolve(argv[1:])
    assert command.name == {"edge": "run", "cloud": "serve"}[side]
    assert args[args.index("--config") + 1] == f"/etc/semcom/{side}.yaml"
    given = {a for a in args if a.startswith("-")}
    assert given <= options(command), given - options(command)


def test_cloud_unit_is_hardened() -> None:
    service = read_unit(UNITS["cloud"])["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "StateDirectory": "semcom",
        "WorkingDirectory": "/var/lib/semcom",
    }
    assert {k: service.get(k, [None])[-1] for k in expected} == expected
    families = set(service["RestrictAddressFamilies"][-1].split())
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= families


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (Debian: systemd)"
)
@pytest.mark.parametrize("side", sorted(UNITS))
def test_systemd_analyze_verify(side: str, tmp_path: Path) -> None:
    """No error or warning (an unknown key is only a warning, so any output fails). The venv
    is not installed here: ExecStart points at /bin/true for the check."""
    assert SYSTEMD_ANALYZE is not None
    text = UNITS[side].read_text().replace("/opt/semcom/venv/bin/semcom", "/bin/true")
    unit = tmp_path / UNITS[side].name
    unit.write_text(text)
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (Debian: systemd)"
)
def test_cloud_unit_exposure_is_low(tmp_path: Path) -> None:
    """`systemd-analyze security` scores 0 (locked down) to 10 (exposed); 'OK' is below 5."""
    assert SYSTEMD_ANALYZE is not None
    unit = tmp_path / "semcom-cloud.service"
    unit.write_text(UNITS["cloud"].read_text())
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--threshold=40", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
