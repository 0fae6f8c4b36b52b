"""A track's :class:`~shared.messages.TrackSummary`: its box path since the last summary,
simplified to the configured pixel tolerance (:func:`shared.paths.simplify`).

The policy buffers a track's boxes (one per frame) from its last summarised point on; a
summary sends the simplified points after that point (the first summary: from the first
sighting on), and the last point sent becomes the anchor the next summary continues from, so
that the simplification of the next stretch starts where the cloud's path ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.limits import MAX_PATH_POINTS
from shared.paths import TimedBox, simplify
from shared.pathwire import PathPoint, TrackPath


def summary_path(
    points: Sequence[TimedBox],
    first_seen_us: int,
    *,
    anchored: bool,
    tolerance_px: float,
    grid: int,
    width: int,
    height: int,
) -> TrackPath:
    """The simplified path of ``points`` (time order); without ``points[0]`` when
    ``anchored`` (the previous summary sent it). Offsets are whole ms after ``first_seen_us``,
    rounded down. Should more than ``MAX_PATH_POINTS`` points be needed, the tolerance is
    doubled until they fit (a summary is never refused)."""
    tolerance = tolerance_px
    while True:
        keep = simplify(points, tolerance, width, height)
        if anchored:
            keep = keep[1:]
        if len(keep) <= MAX_PATH_POINTS:
            break
        tolerance = max(2 * tolerance, 1.0)
    return TrackPath(
        grid,
        tuple(PathPoint((points[i].t_us - first_seen_us) // 1000, points[i].box) for i in keep),
    )
