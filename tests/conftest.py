"""Shared fixtures: team data beside the checkout (optional), generated test videos."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(
    os.environ.get("SEMCOM_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


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
