"""The demo's frame source: the user's (file, folder, image, stream) or the built-in sample.

A still image becomes a camera: a folder holding it, looped at :data:`STILL_FPS` for a few
seconds. Video files run once, unpaced (as fast as the pipeline takes them; capture times
still follow the video's clock); live streams for :data:`LIVE_SECONDS` unless told otherwise.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.capture import IMAGE_SUFFIXES, STREAM_SCHEMES
from semcom.demo_errors import DemoSourceError

#: A still image stands in for a camera delivering it at this rate (frames/s).
STILL_FPS = 5.0
#: How long a still camera and a live stream run unless --seconds says otherwise (s).
STILL_SECONDS = 4.0
LIVE_SECONDS = 10.0

SourceKind = Literal["video", "still", "folder", "live"]


@dataclass(frozen=True)
class DemoSource:
    """What the edge opens (``uri``) and how the summary names it."""

    uri: str
    label: str
    kind: SourceKind
    max_frames: int | None = None
    max_wall_s: float | None = None
    #: deliver frames at the source's rate (cameras) or as fast as they are taken (files)
    pace: bool = False
    loop: bool = False
    fps: float | None = None


def sample_image() -> Path:
    """ultralytics' ``bus.jpg``, found without importing ultralytics (no settings side effects)."""
    spec = importlib.util.find_spec("ultralytics")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "assets" / "bus.jpg"
        if path.is_file():
            return path
    raise DemoSourceError(
        "no --source given and the sample image (ultralytics/assets/bus.jpg of the installed "
        "ultralytics package) is not there: pass --source VIDEO|DIR|URL"
    )


def resolve_source(source: str | None, workdir: Path, seconds: float | None) -> DemoSource:
    """The demo's source; a still image becomes a folder looped at :data:`STILL_FPS`."""
    if source is None:
        image = sample_image()
        return _still(image, workdir, seconds, f"{image.name} (ultralytics sample)")
    text = source.strip()
    if text.isdigit() or text.lower().startswith(STREAM_SCHEMES):
        return DemoSource(text, text, "live", max_wall_s=seconds or LIVE_SECONDS, pace=True)
    path = Path(text).expanduser()
    if not path.exists():
        raise DemoSourceError(
            f"source {source} does not exist (a video file, an image, a folder of images, a "
            "stream URL or a camera index was expected)"
        )
    if path.is_dir():
        return DemoSource(str(path), f"{path} (image folder)", "folder")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _still(path, workdir, seconds, path.name)
    max_frames = None
    if seconds is not None:
        max_frames = max(1, round(seconds * _video_fps(path)))
    return DemoSource(str(path), str(path), "video", max_frames=max_frames)


def _video_fps(path: Path) -> float:
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return float(fps) if fps and fps > 0 else 25.0


def _still(image: Path, workdir: Path, seconds: float | None, name: str) -> DemoSource:
    folder = workdir / "still-camera"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    shutil.copyfile(image, folder / image.name)
    span = seconds or STILL_SECONDS
    return DemoSource(
        str(folder),
        f"{name} as a still camera, {STILL_FPS:g} frames/s for {span:g} s",
        "still",
        max_frames=max(1, round(span * STILL_FPS)),
        pace=True,
        loop=True,
        fps=STILL_FPS,
    )
