"""Shared fixtures: team data beside the checkout (optional), generated test videos."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

DATA = Path(
    os.environ.get("SEMCOM_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session", autouse=True)
def _semcom_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ONNX exports of encoders go to a folder of this test session, not the user's cache
    (``SEMCOM_CACHE_DIR``; child processes inherit it)."""
    folder = tmp_path_factory.mktemp("semcom-cache")
    before = os.environ.get("SEMCOM_CACHE_DIR")
    os.environ["SEMCOM_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("SEMCOM_CACHE_DIR", None)
    else:
        os.environ["SEMCOM_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real videos, weights, images); tests using it are marked realdata."""
    if not (DATA / "videos" / "cars_kraten.mp4").is_file():
        pytest.skip(f"real test material not found at {DATA} (set SEMCOM_TEST_DATA)")
    return DATA


def write_video(
    path: Path, frames: int = 30, size: tuple[int, int] = (320, 192), fps: float = 25.0
) -> Path:
    """A small video of two coloured rectangles moving across a grey road."""
    import cv2

    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(frames):
        img = np.full((height, width, 3), 90, np.uint8)
        x = 10 + 6 * i
        img[60:110, x : x + 70] = (40, 40, 200)
        img[120:170, width - x - 60 : width - x] = (200, 160, 30)
        writer.write(img)
    writer.release()
    return path


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "road.mp4")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a throwaway PostgreSQL cluster (one per test session)."""
    from tests.postgres import cluster, server_bin

    if server_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the test cluster."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The catalog on each supported engine: SQLite file, and a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_url"))
