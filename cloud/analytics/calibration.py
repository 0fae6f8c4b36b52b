"""Ground calibration: a homography from normalised image coordinates to the road, in metres.

A camera looking at a flat road sees the ground plane through a perspective projection, which
is a homography between the image and the plane. Four or more image points whose ground
positions were measured fix it (:func:`solve_ground_map`, OpenCV's ``findHomography`` over all
points, least squares). Image points are normalised to [0, 1] of the frame: the homography
absorbs the frame's aspect, so calibrated results do not depend on the frame size.

A calibration is refused when it cannot define one homography: fewer than four points with
no three of them on one line (in the image or on the ground), a singular solution, points on
both sides of the solution's horizon, or a reprojection error above the allowed one (with
exactly four points the fit is exact, so only a fifth point and beyond test the measurements).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

#: At most this many calibration points (the general-position check looks at every four).
MAX_POINTS = 32
#: Three points are "on one line" when their triangle's doubled area is below this fraction
#: of the squared extent of the point set.
_COLLINEAR_REL = 1e-6

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class CalibrationError(ValueError):
    """Calibration points that do not define one homography; the message says why."""


@dataclass(frozen=True, eq=False)
class GroundMap:
    """A solved calibration: maps normalised image points to ground metres."""

    homography: FloatArray
    """3x3, image (normalised x, y) -> ground (metres)."""
    side: float
    """Sign of the projective scale w at the calibration points: image points whose w has
    the other sign lie beyond the horizon (sky, or behind the camera) and have no ground
    position."""
    rms_error_m: float
    max_error_m: float

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroundMap):
            return NotImplemented
        return bool(
            np.array_equal(self.homography, other.homography)
            and (self.side, self.rms_error_m, self.max_error_m)
            == (other.side, other.rms_error_m, other.max_error_m)
        )

    __hash__ = None  # type: ignore[assignment]

    def to_ground(self, xy: FloatArray) -> tuple[FloatArray, BoolArray]:
        """Ground positions (n, 2) of image points (n, 2), and which of them are on the ground
        side of the horizon (the others' positions are meaningless)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if len(xy) == 0:
            return np.zeros((0, 2)), np.zeros(0, dtype=bool)
        w = xy @ self.homography[2, :2] + self.homography[2, 2]
        valid = w * self.side > 1e-12
        out = cv2.perspectiveTransform(xy.reshape(-1, 1, 2), self.homography).reshape(-1, 2)
        return np.asarray(out, dtype=np.float64), np.asarray(valid, dtype=bool)


def _collinear(a: FloatArray, b: FloatArray, c: FloatArray, tol: float) -> bool:
    cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return bool(abs(cross) <= tol)


def in_general_position(points: FloatArray) -> bool:
    """Whether some four of ``points`` have no three on one line (what a homography needs)."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 4:
        return False
    extent = float(np.ptp(pts, axis=0).max())
    tol = _COLLINEAR_REL * max(extent, 1e-300) ** 2
    for quad in itertools.combinations(range(len(pts)), 4):
        corners = pts[list(quad)]
        if not any(
            _collinear(corners[i], corners[j], corners[k], tol)
            for i, j, k in itertools.combinations(range(4), 3)
        ):
            return True
    return False


def solve_ground_map(image: FloatArray, ground: FloatArray, max_error_m: float) -> GroundMap:
    """Solve and check the homography from ``image`` (n, 2, normalised) to ``ground`` (n, 2,
    metres); raises :class:`CalibrationError` with the reason when it is degenerate."""
    image = np.asarray(image, dtype=np.float64).reshape(-1, 2)
    ground = np.asarray(ground, dtype=np.float64).reshape(-1, 2)
    if len(image) != len(ground):
        raise CalibrationError("as many ground positions as image points are needed")
    if len(image) < 4:
        raise CalibrationError(f"a homography needs at least 4 points, got {len(image)}")
    if len(image) > MAX_POINTS:
        raise CalibrationError(f"at most {MAX_POINTS} points, got {len(image)}")
    for name, pts in (("image", image), ("ground", ground)):
        if not in_general_position(pts):
            raise CalibrationError(
                f"degenerate calibration: the {name} points are collinear (every four of "
                "them have three on one line); a homography needs four points, no three of "
                "them on one line"
            )
    homography, _ = cv2.findHomography(image, ground, 0)
    if homography is None or not np.all(np.isfinite(homography)):
        raise CalibrationError("degenerate calibration: no homography fits these points")
    h = np.asarray(homography, dtype=np.float64)
    singular = np.linalg.svd(h, compute_uv=False)
    if singular[-1] <= 1e-9 * singular[0]:
        raise CalibrationError("degenerate calibration: the fitted homography is singular")
    w = image @ h[2, :2] + h[2, 2]
    if not (np.all(w > 0) or np.all(w < 0)):
        raise CalibrationError(
            "inconsistent calibration: the points lie on both sides of the fitted horizon "
            "(mismatched image and ground points?)"
        )
    side = 1.0 if w[0] > 0 else -1.0
    mapped = cv2.perspectiveTransform(image.reshape(-1, 1, 2), h).reshape(-1, 2)
    errors = np.linalg.norm(mapped - ground, axis=1)
    worst = int(np.argmax(errors))
    rms = float(np.sqrt(np.mean(errors**2)))
    if errors[worst] > max_error_m:
        raise CalibrationError(
            f"reprojection error of point {worst} is {errors[worst]:.3g} m, above "
            f"max_error_m {max_error_m:g} (rms {rms:.3g} m): a mis-measured point, or the "
            "ground is not flat"
        )
    return GroundMap(homography=h, side=side, rms_error_m=rms, max_error_m=float(errors[worst]))
