"""``semcom cloud scene``: set, show and reprocess against a real catalog (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from cloud.analytics.scene import load_scene
from cloud.db import open_database
from cloud.schema import analytics_progress
from cloud.store import Store
from semcom.cli import cli
from shared.vectors import CodecSet
from tests.cloud.analytics_fixtures import SCENE, ingest

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "scenes" / "example.yaml"


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = open_database(url)
    ingest(Store(engine, CodecSet()), [])  # edge-01 with camera cam-a (id 1)
    engine.dispose()
    return url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["cloud", "scene", *args])
    return result.exit_code, result.output


def test_set_show_and_history(db: str, tmp_path: Path) -> None:
    code, out = run("set", "--db", db, "--camera", "edge-01/cam-a", str(EXAMPLE))
    assert code == 0, out
    version = load_scene(EXAMPLE).version
    assert out.strip() == f"camera 1 (edge-01/cam-a): scene {version} set"
    code, out = run("set", "--db", db, "--camera", "1", str(EXAMPLE))
    assert "unchanged" in out
    code, out = run("show", "--db", db, "--camera", "1")
    assert code == 0
    assert out.startswith(f"# camera 1 (edge-01/cam-a), scene {version}, set ")
    assert load_scene(_write(tmp_path / "shown.yaml", out)).version == version  # round trip
    other = _write(tmp_path / "other.yaml", yaml.safe_dump(SCENE))
    run("set", "--db", db, "--camera", "1", str(other))
    code, out = run("show", "--db", db, "--camera", "1", "--history")
    assert [line.split()[0] for line in out.splitlines()] == [load_scene(other).version, version]
    code, out = run("show", "--db", db, "--camera", "1", "--json")
    assert '"gate"' in out


def test_errors_are_one_clear_line(db: str, tmp_path: Path) -> None:
    bad = _write(
        tmp_path / "bad.yaml", "frame: {width: 10, height: 10}\nlines: {a: {points: [[0, 0]]}}\n"
    )
    code, out = run("set", "--db", db, "--camera", "1", str(bad))
    assert code == 1
    assert "lines.a.points" in out
    code, out = run("set", "--db", db, "--camera", "edge-01/nope", str(EXAMPLE))
    assert code == 1
    assert "no camera 'edge-01/nope'" in out
    assert "1 (edge-01/cam-a)" in out
    code, out = run("show", "--db", db, "--camera", "1")
    assert code == 1
    assert "has no scene" in out
    code, out = run("set", "--db", db, "--camera", "cam-a", str(EXAMPLE))
    assert code == 2
    assert "EDGE/NAME" in out


def test_reprocess_resets_the_watermark(db: str) -> None:
    run("set", "--db", db, "--camera", "1", str(EXAMPLE))
    code, out = run("reprocess", "--db", db, "--camera", "1", "--since", "2026-11-24T10:00:00Z")
    assert code == 0, out
    engine = open_database(db)
    with engine.connect() as conn:
        mark = conn.execute(select(analytics_progress.c.watermark_us)).scalar_one()
    engine.dispose()
    assert mark == 1_795_514_400_000_000
    code, out = run("reprocess", "--db", db, "--camera", "1", "--since", "yesterday")
    assert code == 2
    assert "--since" in out


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
