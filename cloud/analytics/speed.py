"""A track's speed: the median of its segment speeds over a minimum duration.

Consecutive samples are a few frames apart, and a box's bottom edge jitters by a pixel or two
between frames, so speeds between neighbouring samples are noisy; a single bad box (an
occlusion, a merge) spoils a distance-over-time figure of the whole track. So the path is cut
greedily into segments of at least ``min_segment_us`` (each from one kept sample to the first
sample that far after it), each segment's speed is its straight distance over its duration,
and the track's speed is the median of those: one outlier segment moves it little. Distances
are measured on the ground (metres, via the calibration) or, without one, in the image with
the frame's aspect applied (image widths).
"""

from __future__ import annotations

import numpy as np

from cloud.analytics.geometry import FloatArray


def segments(t_us: FloatArray, min_segment_us: float) -> list[tuple[int, int]]:
    """(start, end) sample indices of the greedy segments at least ``min_segment_us`` long."""
    out: list[tuple[int, int]] = []
    start = 0
    for j in range(1, len(t_us)):
        if t_us[j] - t_us[start] >= min_segment_us:
            out.append((start, j))
            start = j
    return out


def track_speed(
    t_us: FloatArray, plane: FloatArray, min_segment_us: float
) -> tuple[float, int, int] | None:
    """(median segment speed in distance units per second, number of segments, index of the
    last sample used) of the path ``plane`` (n, 2) at times ``t_us`` (n,); None when it is
    shorter than one segment."""
    cuts = segments(t_us, min_segment_us)
    if not cuts:
        return None
    starts = np.array([a for a, _ in cuts])
    ends = np.array([b for _, b in cuts])
    distance = np.linalg.norm(plane[ends] - plane[starts], axis=1)
    speeds = distance / ((t_us[ends] - t_us[starts]) / 1e6)
    return float(np.median(speeds)), len(cuts), int(ends[-1])
