"""Scripted tracks and scenes of known geometry for the analytics tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cloud.analytics.engine import CompiledScene, compile_scene
from cloud.analytics.geometry import Box, Track
from cloud.analytics.scene import parse_scene

FRAME = {"width": 1920, "height": 1080}
SECOND = 1_000_000
CAR, PERSON = 2, 0


def box_at(x: float, y: float, w: float = 0.04, h: float = 0.03) -> Box:
    """A box whose reference point (bottom centre) is (x, y)."""
    return (x - w / 2, y - h, x + w / 2, y)


def track(
    points: Sequence[tuple[float, float]],
    times_us: Sequence[int] | None = None,
    *,
    key: str = "t1",
    class_id: int | None = CAR,
    ended: bool = False,
    step_us: int = SECOND,
    width: float = 0.04,
) -> Track:
    """A track whose reference points are ``points`` (one per ``step_us`` from 0 unless
    ``times_us`` is given); its boxes are ``width`` wide (0: the reference point's x is
    exactly the point's, with no rounding of the box's centre)."""
    times = list(times_us) if times_us is not None else [i * step_us for i in range(len(points))]
    boxes = [(t, box_at(x, y, w=width)) for t, (x, y) in zip(times, points, strict=True)]
    return Track(key, boxes, class_id, ended)


def scene(**parts: Any) -> CompiledScene:
    """A compiled scene of a 1920x1080 frame with the given parts."""
    data: dict[str, Any] = {"frame": FRAME, **parts}
    return compile_scene(parse_scene(data))


def camera_homography(
    height_m: float = 6.0,
    pitch_deg: float = 15.0,
    focal_widths: float = 0.8,
    aspect: float = 9 / 16,
) -> np.ndarray:
    """Ground (X right, Y forward, metres) -> normalised image, of a pinhole camera
    ``height_m`` above the road pitched ``pitch_deg`` down (focal length in image widths)."""
    s, c = np.sin(np.radians(pitch_deg)), np.cos(np.radians(pitch_deg))
    fx, fy = focal_widths, focal_widths / aspect
    # u*z = 0.5 z + fx X ; v*z = 0.5 z + fy (hc c - Y s) ; z = Y c + hc s
    z = np.array([0.0, c, height_m * s])
    return np.array(
        [
            [fx, 0.5 * c, 0.5 * height_m * s],
            [0.0, 0.5 * c - fy * s, 0.5 * height_m * s + fy * height_m * c],
            z,
        ]
    )


def project(h: np.ndarray, ground: np.ndarray) -> np.ndarray:
    """Apply homography ``h`` to points (n, 2)."""
    pts: np.ndarray = np.c_[np.asarray(ground, dtype=np.float64), np.ones(len(ground))] @ h.T
    return np.asarray(pts[:, :2] / pts[:, 2:])


def calibration(h: np.ndarray, ground: Sequence[tuple[float, float]]) -> Mapping[str, Any]:
    """A scene ``calibration`` from ground points seen through ``h`` (ground -> image)."""
    image = project(h, np.array(ground, dtype=np.float64))
    return {
        "points": [
            {"image": [float(u), float(v)], "ground": list(g)}
            for (u, v), g in zip(image, ground, strict=True)
        ]
    }
