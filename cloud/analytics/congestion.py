"""The congestion level of a zone over a time window, from its occupancy and mean speed.

*Occupancy* is the time-averaged number of vehicles in the zone over the window (the sum of
the vehicles' stays clipped to the window, divided by its length): 2.0 means two vehicles on
average. *Mean speed* is the mean of the speeds (:mod:`.speed`) of the vehicles that were in
the zone during the window. The rule, with thresholds from the zone's ``congestion`` settings
(speeds in the scene's unit; both or neither, defaults in :data:`DEFAULT_SPEEDS`):

- ``free``: occupancy below ``min_occupancy`` (few vehicles flow freely whatever their
  speed), or mean speed at least ``slow_below``;
- ``unknown``: enough vehicles, but none with a measured speed;
- ``slow``: mean speed below ``slow_below``;
- ``jammed``: mean speed below ``jammed_below``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from cloud.analytics.scene import CongestionRule, SpeedUnit

CongestionLevel = Literal["free", "slow", "jammed", "unknown"]

DEFAULT_SPEEDS: Final[dict[SpeedUnit, tuple[float, float]]] = {
    "km/h": (20.0, 5.0),
    # about the same on a view some 30 m wide
    "image_widths/s": (0.2, 0.05),
}
"""(slow_below, jammed_below) by speed unit, where a zone's rule leaves them unset."""


@dataclass(frozen=True)
class CongestionThresholds:
    """A zone's congestion rule with its unit's defaults filled in."""

    min_occupancy: float
    slow_below: float
    jammed_below: float
    unit: SpeedUnit

    @classmethod
    def of(cls, rule: CongestionRule, unit: SpeedUnit) -> CongestionThresholds:
        if rule.slow_below is not None and rule.jammed_below is not None:
            return cls(rule.min_occupancy, rule.slow_below, rule.jammed_below, unit)
        slow, jammed = DEFAULT_SPEEDS[unit]
        return cls(rule.min_occupancy, slow, jammed, unit)


def occupancy(stays: Iterable[tuple[int, int]], start_us: int, end_us: int) -> float:
    """Mean number of vehicles present over [start_us, end_us) given their stays as
    (entry_us, exit_us) pairs (an open stay: exit at the window's end or later)."""
    if end_us <= start_us:
        raise ValueError("the window must have a positive length")
    present = sum(
        max(0, min(exit_us, end_us) - max(entry_us, start_us)) for entry_us, exit_us in stays
    )
    return present / (end_us - start_us)


def mean_speed(speeds: Iterable[float]) -> float | None:
    """The mean of the vehicles' speeds, or None without any."""
    values = list(speeds)
    return sum(values) / len(values) if values else None


def congestion_level(
    occupancy: float, mean_speed: float | None, thresholds: CongestionThresholds
) -> CongestionLevel:
    """The rule of the module docstring."""
    if occupancy < thresholds.min_occupancy:
        return "free"
    if mean_speed is None:
        return "unknown"
    if mean_speed >= thresholds.slow_below:
        return "free"
    if mean_speed >= thresholds.jammed_below:
        return "slow"
    return "jammed"
