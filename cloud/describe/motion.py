"""Apparent motion of a track from its boxes over time (pure functions).

Boxes are normalised to [0, 1] of the frame, so distances here are in *image widths*: a
vertical offset is scaled by the frame's height / width (16:9 assumed when the camera did not
announce its size). A speed is therefore an apparent speed in image widths per second: how
fast the object crosses the picture, not km/h (the camera is not calibrated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

DEFAULT_ASPECT: Final = 9 / 16
"""Height / width assumed for a camera of unknown size."""


@dataclass(frozen=True)
class Observation:
    ts_us: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2, normalised

    def centre(self, aspect: float) -> tuple[float, float]:
        """Centre in image widths (x from the left, y from the top)."""
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2 * aspect


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def apparent_speed(observations: Sequence[Observation], aspect: float) -> float | None:
    """Net centre displacement between the first and last box / elapsed time (widths/s).

    None for fewer than two observations or no elapsed time.
    """
    if len(observations) < 2:
        return None
    first, last = observations[0], observations[-1]
    dt_s = (last.ts_us - first.ts_us) / 1e6
    if dt_s <= 0:
        return None
    return _distance(first.centre(aspect), last.centre(aspect)) / dt_s


def still_for_s(observations: Sequence[Observation], max_move: float, aspect: float) -> float:
    """How long (s) the object has stayed within ``max_move`` widths of its last position.

    Walks back from the last observation while every centre stays that close to the last one;
    0 when the object moved at its last step (or there is one observation).
    """
    if len(observations) < 2:
        return 0.0
    last = observations[-1]
    here = last.centre(aspect)
    earliest = last.ts_us
    for obs in reversed(observations[:-1]):
        if _distance(obs.centre(aspect), here) > max_move:
            break
        earliest = obs.ts_us
    return (last.ts_us - earliest) / 1e6
